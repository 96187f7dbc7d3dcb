// Package crddesc removes the descriptions of chosen properties, and of everything below them, from a generated
// CustomResourceDefinition.
//
// Why: controller-gen can only keep every description or none (crd:maxDescLen). The WorkerPool CRD embeds a
// PodTemplateSpec whose descriptions alone push the CRD past the 256 KiB that client-side `kubectl apply` can
// store in its last-applied annotation, while tasker's own descriptions are what `kubectl explain` users need.
// So the CRDs are generated with descriptions, and this drops them below spec.template only.
package crddesc

import (
	"bytes"
	"fmt"

	"sigs.k8s.io/yaml"
)

// Strip removes every "description" at and below the property at path (property names from the root of each
// version's openAPIV3Schema, e.g. ["spec", "template"]) in the CRD document doc. It fails when a version lacks the
// property, so that a renamed field cannot silently bring the descriptions back.
func Strip(doc []byte, path []string) ([]byte, error) {
	if len(path) == 0 {
		return nil, fmt.Errorf("empty property path")
	}
	var crd map[string]any
	if err := yaml.Unmarshal(doc, &crd); err != nil {
		return nil, fmt.Errorf("parse CRD: %w", err)
	}
	if crd["kind"] != "CustomResourceDefinition" {
		return nil, fmt.Errorf("not a CustomResourceDefinition (kind %v)", crd["kind"])
	}
	spec, _ := crd["spec"].(map[string]any)
	versions, _ := spec["versions"].([]any)
	if len(versions) == 0 {
		return nil, fmt.Errorf("spec.versions: none")
	}
	for _, v := range versions {
		version, _ := v.(map[string]any)
		schema, _ := version["schema"].(map[string]any)
		node, _ := schema["openAPIV3Schema"].(map[string]any)
		for _, name := range path {
			props, _ := node["properties"].(map[string]any)
			next, ok := props[name].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("version %v: no property %q on the path %v", version["name"], name, path)
			}
			node = next
		}
		stripDescriptions(node)
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(doc, []byte("---\n")) { // keep controller-gen's document marker
		out = append([]byte("---\n"), out...)
	}
	return out, nil
}

func stripDescriptions(v any) {
	switch n := v.(type) {
	case map[string]any:
		delete(n, "description")
		for _, child := range n {
			stripDescriptions(child)
		}
	case []any:
		for _, child := range n {
			stripDescriptions(child)
		}
	}
}
