package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// crdSchemas are the structural schemas of the CRDs in config/crd/bases, by kind.
var crdSchemas = sync.OnceValues(func() (map[string]*structuralschema.Structural, error) {
	files, err := filepath.Glob(filepath.Join("..", "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in config/crd/bases: %v", err)
	}
	out := map[string]*structuralschema.Structural{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		var props apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(
			crd.Spec.Versions[0].Schema.OpenAPIV3Schema, &props, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if out[crd.Spec.Names.Kind], err = structuralschema.NewStructural(&props); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return out, nil
})

// applyCRDDefaults sets the defaults of obj's CRD schema (config/crd/bases) on obj, as the apiserver does when it
// stores or reads an object. The fake client applies none: without this, the tests would hand the controllers
// objects that no cluster holds. Objects of other kinds are left alone.
func applyCRDDefaults(t *testing.T, scheme *runtime.Scheme, obj client.Object) {
	t.Helper()
	schemas, err := crdSchemas()
	if err != nil {
		t.Fatal(err)
	}
	gvks, _, err := scheme.ObjectKinds(obj)
	if err != nil {
		t.Fatal(err)
	}
	s := schemas[gvks[0].Kind]
	if s == nil {
		return
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	structuraldefaulting.Default(u, s)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, obj); err != nil {
		t.Fatal(err)
	}
}
