package packaging

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The CRDs document tasker's fields (kubectl explain reads them from the apiserver's OpenAPI) but not the
// embedded PodTemplateSpec's, which would push the WorkerPool CRD past what client-side apply can store in its
// last-applied-configuration annotation (256 KiB).
func TestCRDsExplainTheirFields(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatal("kubectl is needed on PATH (the README lists it as a prerequisite)")
	}
	cache := t.TempDir() // not ~/.kube/cache: an earlier control plane on the same port may have left its discovery
	for _, tc := range []struct{ field, want string }{
		{"tasks.spec.actions", "manual interventions"},
		{"tasks.spec.steps", ""},
		{"tasks.status", ""},
		{"tasktemplates.spec", ""},
		{"crontasks.spec.concurrencyPolicy", "forbid"},
		{"workerpools.spec.scaling", ""},
	} {
		// The apiserver publishes a new CRD's OpenAPI a few seconds after installing it.
		var out []byte
		var err error
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
			out, err = exec.Command("kubectl", "--kubeconfig", kubeconfig, "--cache-dir", cache, "explain", tc.field,
				"--api-version=tasker.dev/v1alpha1").CombinedOutput()
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("kubectl explain %s: %v\n%s", tc.field, err, out)
		}
		desc := explainDescription(string(out))
		if desc == "" || strings.Contains(desc, "<empty>") || strings.Contains(desc, "<no description>") {
			t.Errorf("kubectl explain %s: no description:\n%s", tc.field, out)
		}
		if tc.want != "" && !strings.Contains(strings.ToLower(desc), tc.want) {
			t.Errorf("kubectl explain %s: description %q lacks %q", tc.field, desc, tc.want)
		}
	}

	raw := readRepoFile(t, filepath.Join("config", "crd", "bases", "tasker.dev_workerpools.yaml"))
	if strings.Contains(string(raw), "List of containers belonging to the pod") {
		t.Error("the WorkerPool CRD carries the PodTemplateSpec's descriptions")
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	asJSON, err := json.Marshal(crd)
	if err != nil {
		t.Fatal(err)
	}
	if len(asJSON) > 200<<10 { // leave room below 256 KiB for the rest of the annotation
		t.Errorf("the WorkerPool CRD is %d bytes as JSON: too close to client-side apply's 256 KiB limit", len(asJSON))
	}
}

// explainDescription returns the DESCRIPTION section of kubectl explain's output.
func explainDescription(out string) string {
	_, after, ok := strings.Cut(out, "DESCRIPTION:")
	if !ok {
		return ""
	}
	if i := strings.Index(after, "FIELDS:"); i >= 0 {
		after = after[:i]
	}
	return strings.TrimSpace(after)
}
