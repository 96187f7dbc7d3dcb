package main

import (
	"os/exec"
	"strings"
	"testing"
)

// taskerctl is also the kubectl plugin users install: it must not link the local stack (envtest, the PostgreSQL
// cluster harness), which lives in cmd/tasker-dev.
func TestPluginDoesNotLinkTheLocalStack(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"sigs.k8s.io/controller-runtime/pkg/envtest", "/internal/devstack", "/internal/pgcluster",
			"/internal/testenv"} {
			if strings.Contains(dep, banned) {
				t.Errorf("taskerctl links %s", dep)
			}
		}
	}
}
