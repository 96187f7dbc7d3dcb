// Package devstack runs tasker's local stack on loopback (cmd/tasker-dev, make demo): a PostgreSQL cluster kept
// in a project-local folder, etcd + kube-apiserver from the hack/ cache (through envtest), the CRDs and webhooks,
// the operator (the manager binary), and a Runner that plays kubelet for WorkerPool Deployments by running
// reference-worker processes. It then applies the samples and a burst of small Tasks and shows their progress.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cli"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/pgcluster"
	"github.com/tasker-operator/tasker-operator/internal/poolmetrics"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
	"github.com/tasker-operator/tasker-operator/internal/ui"
)

// Config says where things are and how the demo behaves.
type Config struct {
	// Dir holds the stack's state: postgres/ (kept across runs), logs/, kubeconfig. Git-ignored.
	Dir string
	// AssetsDir has etcd and kube-apiserver (hack/envtest-assets.sh).
	AssetsDir string
	// RepoDir is the repository: config/crd/bases, config/webhook and config/samples are read from it.
	RepoDir string
	// ManagerBin and WorkerBin are the binaries to run.
	ManagerBin, WorkerBin string
	// Burst is the number of small Tasks applied after the samples, to make the pool scale. Default 200.
	Burst int
	// Keep leaves the stack up after the demo finished, until interrupted.
	Keep bool
	// Live redraws the progress in place (a terminal); otherwise a line is printed every few seconds.
	Live bool
	// Out receives the progress.
	Out io.Writer
	// UIAddress is where the web UI listens while the stack runs (host:port); default 127.0.0.1:0, a free port
	// (the URL is printed beside the kubeconfig).
	UIAddress string
}

// Namespace is where the demo's objects go.
const Namespace = "demo"

// Result summarises a run (for tests and the closing message).
type Result struct {
	Samples, BurstTasks     int
	Succeeded               int
	MaxReplicas             int32
	ReplicasAfter           int32
	Elapsed                 time.Duration
	Kubeconfig, DatabaseURL string
	// UIURL is the web UI's address.
	UIURL string
}

// Run starts the stack, runs the demo and stops everything it started before returning, also on error or when
// ctx is cancelled (Ctrl-C).
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	if cfg.Burst == 0 {
		cfg.Burst = 200
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.UIAddress == "" {
		cfg.UIAddress = "127.0.0.1:0"
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, "==> "+format+"\n", args...) }
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return res, err
	}
	// The postgres user must be able to reach its data folder inside Dir.
	if err := os.Chmod(cfg.Dir, 0o755); err != nil {
		return res, err
	}
	started := time.Now()

	say("starting PostgreSQL (data in %s, kept across runs)", filepath.Join(cfg.Dir, "postgres"))
	pg, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: filepath.Join(cfg.Dir, "postgres"), Durable: true})
	if err != nil {
		return res, fmt.Errorf("postgres: %w", err)
	}
	defer pg.Stop()
	dbURL, err := freshDatabase(ctx, pg.URL, "tasker")
	if err != nil {
		return res, err
	}
	res.DatabaseURL = dbURL

	say("starting etcd and kube-apiserver (%s)", cfg.AssetsDir)
	env := &envtest.Environment{
		BinaryAssetsDirectory: cfg.AssetsDir,
		CRDDirectoryPaths:     []string{filepath.Join(cfg.RepoDir, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(cfg.RepoDir, "config", "webhook")}},
	}
	testenv.KillOrphans(cfg.AssetsDir)
	restCfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return res, fmt.Errorf("control plane: %w", err)
	}
	defer func() { _ = env.Stop() }()
	kubeconfig := filepath.Join(cfg.Dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return res, err
	}
	res.Kubeconfig, _ = filepath.Abs(kubeconfig)
	c, err := client.New(restCfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		return res, err
	}

	say("starting the operator (%s; log: %s)", cfg.ManagerBin, filepath.Join(cfg.Dir, "logs", "manager.log"))
	stopManager, err := startManager(ctx, cfg, kubeconfig, dbURL, env.WebhookInstallOptions)
	if err != nil {
		return res, err
	}
	defer stopManager()

	runCtx, stopRunner := context.WithCancel(context.Background())
	runner := &Runner{Client: c, WorkerBin: cfg.WorkerBin, DatabaseURL: dbURL, LogDir: filepath.Join(cfg.Dir, "logs"),
		WorkerArgs: []string{"--poll-interval=500ms", "--drain-timeout=20s"}}
	runnerDone := make(chan struct{})
	go func() { runner.Run(runCtx, 300*time.Millisecond); close(runnerDone) }()
	defer func() { stopRunner(); <-runnerDone }()

	pool, err := store.Open(ctx, dbURL, store.Options{MaxConns: 6, ApplicationName: "taskerctl-dev"})
	if err != nil {
		return res, err
	}
	defer pool.Close()
	eng := engine.New(pool, engine.Options{})

	// The web UI, as `taskerctl ui -A --database-url` serves it, for as long as the stack runs.
	uiLog, err := os.Create(filepath.Join(cfg.Dir, "logs", "ui.log"))
	if err != nil {
		return res, err
	}
	defer func() { _ = uiLog.Close() }()
	uiCtx, stopUI := context.WithCancel(ctx)
	webUI, err := ui.Start(uiCtx, ui.Config{REST: restCfg, Scheme: operator.NewScheme(), Database: eng, Address: cfg.UIAddress,
		ErrorLog: log.New(uiLog, "", log.LstdFlags)})
	if err != nil {
		stopUI()
		return res, fmt.Errorf("web UI: %w", err)
	}
	defer func() { stopUI(); _ = webUI.Wait() }()
	res.UIURL = webUI.URL

	fmt.Fprintf(cfg.Out, "\nkubeconfig: %s\n  KUBECONFIG=%s kubectl get tasks,workerpools -n %s\nweb UI:     %s\n  (workers are local processes; the runner stands in for kubelet — see docs/local-stack.md)\n\n",
		res.Kubeconfig, res.Kubeconfig, Namespace, res.UIURL)

	samples, burst, err := applyDemo(ctx, c, cfg, dbURL)
	if err != nil {
		return res, err
	}
	res.Samples, res.BurstTasks = len(samples), burst

	// Progress until every Task succeeded and the pool came back down.
	phase := "running"
	var lastLine time.Time
	for {
		var list taskerv1alpha1.TaskList
		if err := c.List(ctx, &list, client.InNamespace(Namespace)); err != nil && ctx.Err() == nil {
			return res, err
		}
		var wp taskerv1alpha1.WorkerPoolList
		_ = c.List(ctx, &wp, client.InNamespace(Namespace))
		done, failed := 0, 0
		for _, tk := range list.Items {
			switch tk.Status.Phase {
			case taskerv1alpha1.TaskSucceeded:
				done++
			case taskerv1alpha1.TaskFailed, taskerv1alpha1.TaskCancelled:
				failed++
			}
		}
		total := len(samples) + burst
		maxSeen := int32(0)
		for _, p := range wp.Items {
			maxSeen = max(maxSeen, runner.Max(p.Namespace, p.Name))
		}
		drew := false
		if cfg.Live || time.Since(lastLine) > 5*time.Second {
			lastLine, drew = time.Now(), true
			draw(ctx, cfg, eng, list.Items, samples, wp.Items, runner, done, total)
		}
		switch phase {
		case "running":
			if failed > 0 {
				return res, fmt.Errorf("%d Task(s) did not succeed; see `taskerctl describe` and %s", failed, filepath.Join(cfg.Dir, "logs"))
			}
			if done == total {
				res.Succeeded = done
				if !drew { // the line that says so, with the backlog of that moment
					lastLine = time.Now()
					draw(ctx, cfg, eng, list.Items, samples, wp.Items, runner, done, total)
				}
				say("all sample tasks succeeded (%d Tasks: %d samples + %d burst) in %s", done, len(samples), burst,
					cli.FormatDuration(time.Since(started)))
				phase = "scaling-down"
			}
		case "scaling-down":
			cur := int32(0)
			for _, p := range wp.Items {
				cur += p.Status.DesiredReplicas
			}
			if maxSeen > 1 && cur < maxSeen {
				res.MaxReplicas, res.ReplicasAfter = maxSeen, cur
				say("the pool scaled up to %d replicas during the burst and back down to %d", maxSeen, cur)
				res.Elapsed = time.Since(started)
				if !cfg.Keep {
					say("stopping everything (use --keep to leave the stack up)")
					return res, nil
				}
				say("the stack stays up (--keep); Ctrl-C stops it")
				phase = "kept"
			}
		}
		select {
		case <-ctx.Done():
			res.Elapsed = time.Since(started)
			say("interrupted: stopping everything")
			if phase == "kept" {
				return res, nil
			}
			return res, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// freshDatabase (re)creates a database so every demo run starts clean, and returns its URL.
func freshDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(ctx) }()
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", err
	}
	return strings.Replace(adminURL, "/postgres?", "/"+name+"?", 1), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startManager runs the operator binary and waits until it is ready; the returned func stops it (SIGTERM).
func startManager(ctx context.Context, cfg Config, kubeconfig, dbURL string, wh envtest.WebhookInstallOptions) (func(), error) {
	probe, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(cfg.Dir, "logs", "manager.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.ManagerBin,
		"--kubeconfig="+kubeconfig, "--database-url="+dbURL,
		"--metrics-bind-address=0", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probe),
		fmt.Sprintf("--webhook-port=%d", wh.LocalServingPort), "--webhook-cert-dir="+wh.LocalServingCertDir,
		"--upkeep-interval=2s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe))
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("the operator exited during start-up; see %s", logFile.Name())
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("the operator did not become ready within 2 minutes")
		}
	}
}

// applyDemo creates the namespace, the database Secret, the samples (WorkerPool and TaskTemplates first) and the
// burst. It returns the sample Tasks' names and the burst's size.
func applyDemo(ctx context.Context, c client.Client, cfg Config, dbURL string) ([]string, int, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return nil, 0, err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "tasker-db"},
		StringData: map[string]string{"url": dbURL}}
	if err := c.Create(ctx, secret); err != nil {
		return nil, 0, err
	}
	files, err := filepath.Glob(filepath.Join(cfg.RepoDir, "config", "samples", "tasker_*.yaml"))
	if err != nil {
		return nil, 0, err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, 0, err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", f, err)
		}
		obj.SetNamespace(Namespace)
		objs = append(objs, obj)
	}
	order := map[string]int{"WorkerPool": 0, "TaskTemplate": 1, "Task": 2}
	sort.SliceStable(objs, func(i, j int) bool { return order[objs[i].GetKind()] < order[objs[j].GetKind()] })
	var samples []string
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			return nil, 0, fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		fmt.Fprintf(cfg.Out, "    applied %s/%s\n", strings.ToLower(obj.GetKind()), obj.GetName())
		if obj.GetKind() == "Task" {
			samples = append(samples, obj.GetName())
			if signals := SampleSignals(obj); len(signals) > 0 {
				signalLater(ctx, c, cfg.Out, Namespace, obj.GetName(), signals, 5*time.Second)
			}
		}
	}
	for i := range cfg.Burst {
		tk := &taskerv1alpha1.Task{
			ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: fmt.Sprintf("burst-%03d", i),
				Labels: map[string]string{"tasker.dev/demo": "burst"}},
			Spec: taskerv1alpha1.TaskSpec{
				Steps: []taskerv1alpha1.StepSpec{
					{Name: "fetch", Handler: "echo"},
					{Name: "work", Handler: "sleep", DependsOn: []string{"fetch"}, Inputs: jsonRaw(`{"seconds":0.3}`)},
				},
			},
		}
		if err := c.Create(ctx, tk); err != nil {
			return nil, 0, fmt.Errorf("burst: %w", err)
		}
	}
	fmt.Fprintf(cfg.Out, "    applied %d burst Tasks (burst-000 … burst-%03d)\n\n", cfg.Burst, cfg.Burst-1)
	return samples, cfg.Burst, nil
}

// draw shows the sample Tasks' trees, the burst's progress and the pools.
func draw(ctx context.Context, cfg Config, eng *engine.Engine, tasks []taskerv1alpha1.Task, samples []string,
	pools []taskerv1alpha1.WorkerPool, runner *Runner, done, total int) {
	var b strings.Builder
	if cfg.Live {
		b.WriteString("\x1b[H\x1b[2J")
	}
	byName := map[string]*taskerv1alpha1.Task{}
	burstDone, burstTotal := 0, 0
	for i := range tasks {
		tk := &tasks[i]
		byName[tk.Name] = tk
		if tk.Labels["tasker.dev/demo"] == "burst" {
			burstTotal++
			if tk.Status.Phase == taskerv1alpha1.TaskSucceeded {
				burstDone++
			}
		}
	}
	if cfg.Live {
		for _, name := range samples {
			tk := byName[name]
			if tk == nil {
				continue
			}
			v := cli.FromStatus(tk)
			if tk.Status.TaskID != 0 {
				if st, err := eng.GetTask(ctx, tk.Status.TaskID); err == nil {
					v = cli.FromEngine(tk, st)
				}
			}
			_ = cli.Render(&b, v, cli.RenderOptions{Width: 110, Color: true})
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "tasks: %d/%d succeeded (burst %d/%d)", done, total, burstDone, burstTotal)
	for _, p := range pools {
		// The backlog as it is now, from the database; the pool's status is the operator's last reading, which
		// may be a polling interval old (a drained pool still showed its last backlog and desired replicas).
		now := "backlog unknown"
		queues := p.Status.DatabaseQueues // the operator's mapping; before its first reading, the default one
		if len(queues) == 0 {
			queues = queuescope.Scope{}.DatabaseQueues(p.Namespace, p.Spec.Queues)
		}
		if bl, err := poolmetrics.New(eng.Pool()).Backlog(ctx, queues); err == nil {
			now = fmt.Sprintf("backlog %d", bl.Total)
		}
		fmt.Fprintf(&b, " | pool %s: %s now (operator's last reading %d, desired %d), ready %d, workers %d (max %d)",
			p.Name, now, p.Status.Backlog, p.Status.DesiredReplicas, p.Status.ReadyReplicas, runner.Running(),
			runner.Max(p.Namespace, p.Name))
	}
	b.WriteString("\n")
	fmt.Fprint(cfg.Out, b.String())
}

func jsonRaw(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }
