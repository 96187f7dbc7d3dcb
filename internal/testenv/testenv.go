// Package testenv starts the integration-test control plane: a real kube-apiserver and etcd (built by
// hack/envtest-assets.sh) through controller-runtime's envtest, with the project's CRDs and validating webhooks
// installed and a manager running the operator's reconcilers and webhook server.
//
// One Env serves a whole test binary (start it in TestMain); tests isolate themselves by namespace.
package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tasker-operator/tasker-operator/internal/operator"
)

// Versions the assets are built at; keep in step with hack/envtest-assets.sh.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
)

// AssetsDir returns the folder with kube-apiserver, etcd and kube-controller-manager: KUBEBUILDER_ASSETS when
// set, else the cache folder hack/envtest-assets.sh builds into.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "envtest", "k8s-"+KubernetesVersion+"-etcd-"+EtcdVersion)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		return "", fmt.Errorf("envtest assets not found in %s: run `make envtest-assets` (or `make test`)", dir)
	}
	return dir, nil
}

// RepoRoot finds the module root by walking up from the working directory to go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Options tune an Env.
type Options struct {
	// Setup registers extra runnables or reconcilers on the manager (after the operator's own). Optional.
	Setup func(mgr ctrl.Manager) error
	// SkipOperator starts the manager without the operator's reconcilers (webhooks still run).
	SkipOperator bool
	// Operator are the options of the operator's Setup (EnableWebhooks is always on).
	Operator operator.Options
}

// Env is a running control plane with a manager.
type Env struct {
	Config  *rest.Config
	Client  client.Client // a direct (uncached) client with the operator's scheme
	Manager ctrl.Manager
	// Components are the operator's reconcilers (nil with SkipOperator).
	Components *operator.Components

	env    *envtest.Environment
	cancel context.CancelFunc
	done   chan error
}

// Start starts etcd, kube-apiserver, installs CRDs and webhooks, and runs a manager with the operator.
func Start(opts Options) (*Env, error) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(false), zap.Level(levelFromEnv())))
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(root, "config", "webhook")},
		},
	}
	KillOrphans(assets)
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop() // Start leaves etcd and kube-apiserver running when a later step (CRDs, webhooks) fails
		return nil, fmt.Errorf("start envtest control plane: %w", err)
	}
	e := &Env{Config: cfg, env: env}
	fail := func(err error) (*Env, error) {
		_ = env.Stop()
		return nil, err
	}
	scheme := operator.NewScheme()
	e.Client, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fail(err)
	}
	wh := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir,
		}),
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fail(err)
	}
	e.Manager = mgr
	if opts.SkipOperator {
		err = operator.SetupWebhooks(mgr, nil)
	} else {
		opOpts := opts.Operator
		opOpts.EnableWebhooks = true
		e.Components, err = operator.Setup(mgr, opOpts)
	}
	if err != nil {
		return fail(err)
	}
	if opts.Setup != nil {
		if err := opts.Setup(mgr); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- mgr.Start(ctx) }()

	// The apiserver calls the webhook for every create: wait until it serves TLS.
	addr := net.JoinHostPort(wh.LocalServingHost, strconv.Itoa(wh.LocalServingPort))
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test-only readiness probe
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			e.Stop()
			return nil, fmt.Errorf("webhook server did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e, nil
}

// Stop stops the manager and the control plane.
func (e *Env) Stop() {
	if e.cancel != nil {
		e.cancel()
		select {
		case _ = <-e.done:
		case <-time.After(30 * time.Second):
		}
	}
	if e.env != nil {
		_ = e.env.Stop()
	}
}

// levelFromEnv reads TEST_LOG_LEVEL (0 info, 1+ debug); by default only errors are logged, since tests print
// what they check.
func levelFromEnv() zapcore.Level {
	if v, err := strconv.Atoi(os.Getenv("TEST_LOG_LEVEL")); err == nil {
		return zapcore.Level(-v)
	}
	return zapcore.ErrorLevel
}

// KubeConfig returns a kubeconfig (admin) for the control plane, for running binaries against it.
func (e *Env) KubeConfig() []byte { return e.env.KubeConfig }

// WebhookCertDir is the folder with the serving certificate envtest generated for the webhook server.
func (e *Env) WebhookCertDir() string { return e.env.WebhookInstallOptions.LocalServingCertDir }

// Logger is the logger tests hand to components they build themselves (it follows TEST_LOG_LEVEL once Start
// has run).
func Logger() logr.Logger { return logf.Log.WithName("test") }

// ManagerExited is readable once the manager stopped (with its error, nil after Stop).
func (e *Env) ManagerExited() <-chan error { return e.done }
