package packaging

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManifestsUseManagerFlags: every flag the Deployments and Jobs pass to /manager (the chart with each value
// set, the kustomize overlays) is one cmd/manager defines, so a renamed flag cannot ship a crash-looping install.
func TestManifestsUseManagerFlags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build manager: %v\n%s", err, out)
	}
	help, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits 0 or 2 depending on the flag package
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		defined[m[1]] = true
	}
	if len(defined) < 5 {
		t.Fatalf("could not read the manager's flags from -h:\n%s", help)
	}

	renders := map[string]Objects{}
	for _, tc := range chartCases() {
		renders["chart "+tc.name] = renderChart(t, "tasker-flags", tc.values, nil, tc.apiVersions...)
	}
	for _, dir := range []string{"config/default", "config/migration"} {
		renders[dir] = kustomizeBuild(t, dir)
	}
	for name, objs := range renders {
		for pod, tmpl := range podSpecs(t, objs) {
			for _, c := range tmpl.Spec.Containers {
				if len(c.Command) == 0 || c.Command[0] != "/manager" {
					continue
				}
				for _, arg := range c.Args {
					flagName, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
					if !strings.HasPrefix(arg, "-") || !defined[flagName] {
						t.Errorf("%s %s container %s: %q is not a flag of cmd/manager", name, pod, c.Name, arg)
					}
				}
			}
		}
	}
}
