package crddesc

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const crd = `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: pools.example.dev
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        description: A pool.
        properties:
          spec:
            description: What the pool should be.
            properties:
              replicas:
                description: How many.
                type: integer
              template:
                description: The Pods.
                properties:
                  spec:
                    description: Pod spec.
                    properties:
                      containers:
                        description: Containers.
                        items:
                          description: A container.
                          properties:
                            name:
                              description: Its name.
                              type: string
                          type: object
                        type: array
                    type: object
                type: object
            type: object
        type: object
`

func TestStrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		path    []string
		keep    []string // descriptions that must remain
		drop    []string // descriptions that must be gone
		wantErr string
	}{
		{name: "below the template only", doc: crd, path: []string{"spec", "template"},
			keep: []string{"A pool.", "What the pool should be.", "How many."},
			drop: []string{"The Pods.", "Pod spec.", "Containers.", "A container.", "Its name."}},
		{name: "a leaf", doc: crd, path: []string{"spec", "replicas"},
			keep: []string{"The Pods.", "Its name."}, drop: []string{"How many."}},
		{name: "missing property", doc: crd, path: []string{"spec", "podTemplate"}, wantErr: `no property "podTemplate"`},
		{name: "empty path", doc: crd, wantErr: "empty property path"},
		{name: "not a CRD", doc: "kind: ConfigMap\n", path: []string{"spec"}, wantErr: "not a CustomResourceDefinition"},
		{name: "not YAML", doc: "{", path: []string{"spec"}, wantErr: "parse CRD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Strip([]byte(tc.doc), tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tc.keep {
				if !strings.Contains(string(out), "description: "+d) {
					t.Errorf("lost %q", d)
				}
			}
			for _, d := range tc.drop {
				if strings.Contains(string(out), "description: "+d) {
					t.Errorf("kept %q", d)
				}
			}
			if !strings.HasPrefix(string(out), "---\n") {
				t.Error("document marker lost")
			}
			var back map[string]any
			if err := yaml.Unmarshal(out, &back); err != nil || back["kind"] != "CustomResourceDefinition" {
				t.Errorf("output does not parse as the CRD: %v", err)
			}
		})
	}
}
