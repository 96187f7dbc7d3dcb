// Package packaging tests the install artefacts — the kustomize overlays under config/ and the Helm chart under
// charts/tasker-operator — against a real kube-apiserver (envtest, built by hack/envtest-assets.sh): every
// rendered object must pass a server-side dry-run apply, the manager's ClusterRole must grant exactly what the
// controllers' RBAC markers generate (config/rbac/role.yaml), every Pod must run non-root with a read-only root
// filesystem and no privilege escalation, and the chart's copies of generated files must be current.
//
// The chart is rendered with Helm's own template engine (helm.sh/helm/v3, the library `helm template` uses);
// kustomize overlays are built with the pinned kustomize binary from the tool cache (`make kustomize`; the
// tests install it with hack/go-install.sh when it is missing).
package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

var (
	repoRoot     string
	kustomizeBin string
	restConfig   *rest.Config
	k8sClient    client.Client
	kubeconfig   string // a kubeconfig file for the control plane (for kubectl)
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	var err error
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		return fail(err)
	}
	if kustomizeBin, err = findKustomize(repoRoot); err != nil {
		return fail(err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		return fail(err)
	}
	// The project's CRDs are installed up front (the dry runs then check the rendered copies apply on top of
	// them), with stand-ins for the cert-manager and prometheus-operator CRDs the optional objects need.
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths: []string{
			filepath.Join(repoRoot, "config", "crd", "bases"),
			filepath.Join(repoRoot, "test", "packaging", "testdata", "crds"),
		},
		ErrorIfCRDPathMissing: true,
	}
	if restConfig, err = env.Start(); err != nil {
		return fail(fmt.Errorf("start envtest: %w", err))
	}
	defer func() { _ = env.Stop() }()
	if k8sClient, err = client.New(restConfig, client.Options{}); err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "packaging-kubeconfig-")
	if err != nil {
		return fail(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return fail(err)
	}
	return m.Run()
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "packaging tests:", err)
	return 1
}

// findKustomize returns the kustomize binary: $KUSTOMIZE (the Makefile passes it), else the versioned binary in
// the tool cache, installed there with hack/go-install.sh (idempotent, shared by every clone) if missing.
func findKustomize(root string) (string, error) {
	if bin := os.Getenv("KUSTOMIZE"); bin != "" {
		return bin, nil
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^KUSTOMIZE_VERSION \?= (\S+)$`).FindSubmatch(makefile)
	if m == nil {
		return "", fmt.Errorf("KUSTOMIZE_VERSION not found in the Makefile")
	}
	cache, err := testenv.CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "bin", "kustomize-"+string(m[1]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.Command(filepath.Join(root, "hack", "go-install.sh"), bin, "sigs.k8s.io/kustomize/kustomize/v5", string(m[1]))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install kustomize (make kustomize): %w", err)
	}
	return bin, nil
}
