// Package chaos runs the whole stack under faults: Tasks of mixed shapes through the real apiserver (with the
// admission webhook), two operator processes with leader election and eight worker processes on a durable
// PostgreSQL, while a driver on a seeded schedule SIGKILLs workers (starting new ones), SIGKILLs the leading
// operator twice (starting it again, as its Deployment would) and restarts PostgreSQL twice, once as a crash
// (immediate shutdown, crash recovery) and once with a fast shutdown. At the end every Task must be terminal with
// the outcome its shape implies, every step's history consistent, no message left, and every Task's status equal
// to the database's.
//
// `make test` runs a small version; `make chaos` runs ≥ 1,000 Tasks (TASKER_CHAOS_TASKS) and writes the figures
// to docs/reliability.md (TASKER_CHAOS_REPORT).
package chaos

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgcluster"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// Sizes of a run, from the environment.
type sizes struct {
	tasks      int           // Tasks in all (TASKER_CHAOS_TASKS, default 40)
	seed       uint64        // the fault schedule's seed (TASKER_CHAOS_SEED, default 1)
	longStep   time.Duration // the heartbeating steps' length (30 s from 500 Tasks up, else 20 s)
	killEvery  time.Duration // mean time between worker kills
	window     time.Duration // the operator kills and database restarts fall within it (shorter than a long step)
	workers    int
	report     string // file to write the figures into (TASKER_CHAOS_REPORT), or ""
	maxRuntime time.Duration
}

func sizesFromEnv(t *testing.T) sizes {
	s := sizes{tasks: 40, seed: 1, longStep: 20 * time.Second, killEvery: 2 * time.Second, window: 16 * time.Second, workers: 8,
		report: os.Getenv("TASKER_CHAOS_REPORT"), maxRuntime: 10 * time.Minute}
	if v := os.Getenv("TASKER_CHAOS_TASKS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 {
			t.Fatalf("TASKER_CHAOS_TASKS=%q: want a number >= 5", v)
		}
		s.tasks = n
	}
	if v := os.Getenv("TASKER_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TASKER_CHAOS_SEED=%q: %v", v, err)
		}
		s.seed = n
	}
	if s.tasks >= 500 {
		s.longStep, s.killEvery, s.window, s.maxRuntime = 30*time.Second, 4*time.Second, 60*time.Second, 60*time.Minute
	}
	return s
}

// shape is a kind of Task of the run and the outcome it must reach.
type shape struct {
	name  string
	want  taskerv1alpha1.TaskPhase
	steps func(s sizes) []taskerv1alpha1.StepSpec
}

// Every step may be retried many times: a killed worker's steps count an attempt each time their lease expires.
var retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(50)), Backoff: &taskerv1alpha1.Backoff{
	Base: &metav1.Duration{Duration: 50 * time.Millisecond}, Max: &metav1.Duration{Duration: time.Second}}}

func st(name, handler, inputs string, deps ...string) taskerv1alpha1.StepSpec {
	s := taskerv1alpha1.StepSpec{Name: name, Handler: handler, DependsOn: deps, Retry: retry}
	if inputs != "" {
		s.Inputs = &apiextensionsv1.JSON{Raw: []byte(inputs)}
	}
	return s
}

var shapes = []shape{
	{"chain", taskerv1alpha1.TaskSucceeded, func(sizes) []taskerv1alpha1.StepSpec {
		out := []taskerv1alpha1.StepSpec{st("s0", "echo", `{"i":0}`)}
		for i := 1; i < 10; i++ {
			out = append(out, st(fmt.Sprintf("s%d", i), "echo", fmt.Sprintf(`{"i":%d}`, i), fmt.Sprintf("s%d", i-1)))
		}
		return out
	}},
	{"fan", taskerv1alpha1.TaskSucceeded, func(sizes) []taskerv1alpha1.StepSpec {
		out := []taskerv1alpha1.StepSpec{st("root", "echo", "")}
		var mids []string
		for i := 0; i < 50; i++ {
			name := fmt.Sprintf("m%02d", i)
			mids = append(mids, name)
			out = append(out, st(name, "echo", fmt.Sprintf(`{"i":%d}`, i), "root"))
		}
		return append(out, st("join", "echo", "", mids...))
	}},
	{"flaky", taskerv1alpha1.TaskSucceeded, func(sizes) []taskerv1alpha1.StepSpec {
		return []taskerv1alpha1.StepSpec{st("a", "echo", ""), st("b", "fail", `{"failTimes":2}`, "a"), st("c", "echo", "", "b")}
	}},
	{"broken", taskerv1alpha1.TaskFailed, func(sizes) []taskerv1alpha1.StepSpec {
		return []taskerv1alpha1.StepSpec{st("a", "echo", ""), st("b", "fail", `{"permanent":true}`, "a"), st("c", "echo", "", "b")}
	}},
	{"long", taskerv1alpha1.TaskSucceeded, func(s sizes) []taskerv1alpha1.StepSpec {
		return []taskerv1alpha1.StepSpec{st("a", "sleep", fmt.Sprintf(`{"seconds":%g}`, s.longStep.Seconds())), st("b", "echo", "", "a")}
	}},
	// A map: instances killed with their workers run again; the gathered result must still be the items in order.
	{"map", taskerv1alpha1.TaskSucceeded, func(sizes) []taskerv1alpha1.StepSpec {
		each := st("each", "echo", "", "list")
		each.ForEach = "$.deps.list.items"
		return []taskerv1alpha1.StepSpec{st("list", "echo", mapItems), each, st("join", "echo", "", "each")}
	}},
	// A child workflow per element (forEach over the template childTemplate): its steps, run by workers that are
	// killed, retried after failing twice, must still give each child's output, and the map their array in order.
	{"child", taskerv1alpha1.TaskSucceeded, func(sizes) []taskerv1alpha1.StepSpec {
		run := taskerv1alpha1.StepSpec{Name: "run", Template: childTemplate, DependsOn: []string{"list"}, Retry: retry,
			ForEach: "$.deps.list.items", ArgumentsFrom: map[string]string{"n": "$.item"}}
		return []taskerv1alpha1.StepSpec{st("list", "echo", `{"items":[0,1,2]}`), run, st("join", "echo", "", "run")}
	}},
	// A wait: it outlasts the operator kills and PostgreSQL restarts, and the signal sent after them (a Signal
	// action) completes it.
	{"wait", taskerv1alpha1.TaskSucceeded, func(sizes) []taskerv1alpha1.StepSpec {
		gate := taskerv1alpha1.StepSpec{Name: "gate", DependsOn: []string{"a"}, Wait: &taskerv1alpha1.WaitSpec{Signal: "go"}}
		return []taskerv1alpha1.StepSpec{st("a", "echo", ""), gate, st("b", "echo", "", "gate")}
	}},
}

// childTemplate is the TaskTemplate the child shape runs: its parameter n comes back as its output.
const childTemplate = "chaos-child"

func childTemplateObject(ns string) *taskerv1alpha1.TaskTemplate {
	return &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: childTemplate, Namespace: ns},
		Spec: taskerv1alpha1.TaskTemplateSpec{
			Parameters: []taskerv1alpha1.TemplateParameter{{Name: "n", Type: taskerv1alpha1.ParameterInteger, Required: true}},
			Steps: []taskerv1alpha1.StepSpec{st("first", "echo", ""), st("flaky", "fail", `{"failTimes":2}`, "first"),
				st("last", "echo", "", "flaky")},
			// The reference worker's fail handler returns {"attempt": n}: its third attempt at least.
			Outputs: map[string]string{"n": "$.context.params.n", "flaky": "$.steps.flaky.attempt >= 3"},
		}}
}

// What the child shape's map step must gather.
const childGathered = `[{"n": 0, "flaky": true}, {"n": 1, "flaky": true}, {"n": 2, "flaky": true}]`

// The map shape's items, and what its map step must gather.
const (
	mapItems    = `{"items":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29]}`
	mapGathered = `[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]`
)

func TestChaos(t *testing.T) {
	sz := sizesFromEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), sz.maxRuntime+10*time.Minute)
	defer cancel()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build(t, root, bin)
	logs := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the run's processes are in %s (kept)", logs)
		}
	})

	pg, err := pgcluster.Start(ctx, pgcluster.Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	dbURL := createDatabase(t, ctx, pg.URL, "chaos")

	env, err := testenv.Start(testenv.Options{SkipOperator: true}) // the apiserver, and the webhook in this process
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig(), 0o600); err != nil {
		t.Fatal(err)
	}

	// The Tasks' namespace; its queue "chaos" is the database queue queuescope.Namespaced(ns, "chaos").
	ns := env.NewNamespace(t, "chaos")
	procs := &processes{t: t, bin: bin, logs: logs, kubeconfig: kubeconfig, dbURL: dbURL,
		queue: queuescope.Namespaced(ns, "chaos")}
	defer procs.stopAll()
	ops := []*operatorProc{procs.startOperator(ctx, "op-a"), procs.startOperator(ctx, "op-b")}
	for range sz.workers {
		procs.startWorker()
	}

	if err := env.Client.Create(ctx, childTemplateObject(ns)); err != nil {
		t.Fatal(err)
	}
	// The Tasks, all applied up front (the operators admit them while the faults go on).
	want := map[string]taskerv1alpha1.TaskPhase{}
	for i := range sz.tasks {
		sh := shapes[i%len(shapes)]
		tk := &taskerv1alpha1.Task{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", sh.name, i), Namespace: ns},
			Spec:       taskerv1alpha1.TaskSpec{Queue: "chaos", Steps: sh.steps(sz)},
		}
		if err := env.Client.Create(ctx, tk); err != nil {
			t.Fatalf("create %s: %v", tk.Name, err)
		}
		want[tk.Name] = sh.want
	}
	started := time.Now()

	// The faults, on a seeded schedule, until every Task is terminal.
	rng := rand.New(rand.NewPCG(sz.seed, sz.seed^0x5eed))
	stats := &faultStats{}
	done := func() bool {
		var list taskerv1alpha1.TaskList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false
		}
		for i := range list.Items {
			switch list.Items[i].Status.Phase {
			case taskerv1alpha1.TaskSucceeded, taskerv1alpha1.TaskFailed, taskerv1alpha1.TaskCancelled:
			default:
				return false
			}
		}
		return len(list.Items) == sz.tasks
	}
	// Operator kills and database restarts, spread over the window (the long steps outlast it, so Tasks run
	// throughout); worker kills all along.
	w := sz.window
	events := []struct {
		at   time.Duration
		what string
	}{{w / 5, "kill-leader"}, {2 * w / 5, "pg-crash"}, {3 * w / 5, "kill-leader"}, {4 * w / 5, "pg-fast"}}
	nextKill := time.Duration(float64(sz.killEvery) * (0.5 + rng.Float64()))
	signalled := false
	for !done() {
		elapsed := time.Since(started)
		if elapsed > sz.maxRuntime {
			t.Fatalf("the Tasks did not all finish within %s", sz.maxRuntime)
		}
		if len(events) > 0 && elapsed >= events[0].at {
			switch events[0].what {
			case "kill-leader":
				leader := leaderOf(t, ops)
				t.Logf("%s: SIGKILL the leading operator %s", elapsed.Round(time.Millisecond), leader.name)
				leader.kill()
				stats.operatorKills++
				time.Sleep(time.Second) // a Deployment starts a new Pod a little later
				for i, op := range ops {
					if op == leader {
						ops[i] = procs.startOperator(ctx, leader.name)
					}
				}
			case "pg-crash", "pg-fast":
				stop, how := pg.Crash, "crashes (immediate shutdown), then recovers"
				if events[0].what == "pg-fast" {
					stop, how = pg.Pause, "restarts (fast shutdown)"
				}
				t.Logf("%s: PostgreSQL %s", elapsed.Round(time.Millisecond), how)
				stop()
				time.Sleep(2 * time.Second)
				if err := pg.Resume(ctx); err != nil {
					t.Fatal(err)
				}
				stats.pgRestarts++
			}
			events = events[1:]
			continue
		}
		if len(events) == 0 && !signalled {
			// Every fault is behind: the waits that survived them get their signal, through the apiserver.
			signalled = true
			sendSignals(t, ctx, env.Client, ns)
		}
		if elapsed >= nextKill {
			procs.killRandomWorker(rng)
			stats.workerKills++
			procs.startWorker()
			nextKill = elapsed + time.Duration(float64(sz.killEvery)*(0.5+rng.Float64()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	duration := time.Since(started)
	if len(events) > 0 {
		t.Errorf("the Tasks finished before every fault was injected (left: %v): raise TASKER_CHAOS_TASKS", events)
	}

	res := verify(t, ctx, env.Client, ns, dbURL, want)
	res.faultStats = *stats
	res.duration = duration
	res.seed = sz.seed
	line := res.String()
	t.Log(line)
	if sz.report != "" && !t.Failed() {
		writeReport(t, sz.report, res)
	}
}

// sendSignals patches a Signal action into every Task of the wait shape.
func sendSignals(t *testing.T, ctx context.Context, c client.Client, ns string) {
	t.Helper()
	var list taskerv1alpha1.TaskList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range list.Items {
		tk := &list.Items[i]
		if !strings.HasPrefix(tk.Name, "wait-") {
			continue
		}
		patch := client.RawPatch(types.MergePatchType, []byte(
			`{"spec":{"actions":[{"id":"go-1","type":"Signal","signal":"go","result":{"go":true}}]}}`))
		if err := c.Patch(ctx, tk, patch); err != nil {
			t.Fatalf("signal %s: %v", tk.Name, err)
		}
		n++
	}
	t.Logf("signalled %d waiting Tasks", n)
}

type faultStats struct{ workerKills, operatorKills, pgRestarts int }

type result struct {
	faultStats
	tasks, steps, lost, duplicated int
	duration                       time.Duration
	seed                           uint64
}

func (r result) String() string {
	return fmt.Sprintf("chaos: %d Tasks (%d steps) in %s, seed %d: %d worker kills, %d operator kills, %d PostgreSQL restarts; lost %d, duplicated %d",
		r.tasks, r.steps, r.duration.Round(time.Second), r.seed, r.workerKills, r.operatorKills, r.pgRestarts, r.lost, r.duplicated)
}

// verify checks the end state and counts what was lost or duplicated.
func verify(t *testing.T, ctx context.Context, c client.Client, ns, dbURL string, want map[string]taskerv1alpha1.TaskPhase) result {
	t.Helper()
	pool, err := store.Open(ctx, dbURL, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	eng := engine.New(pool, engine.Options{})
	res := result{tasks: len(want)}

	var list taskerv1alpha1.TaskList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		tk := &list.Items[i]
		if got := tk.Status.Phase; got != want[tk.Name] {
			t.Errorf("Task %s is %s, want %s", tk.Name, got, want[tk.Name])
			if got != taskerv1alpha1.TaskSucceeded && got != taskerv1alpha1.TaskFailed {
				res.lost++
			}
		}
		// The status equals the database's (the operator's final write after the task finished).
		var dbTask *engine.TaskState
		waitUntil(t, 30*time.Second, func() (bool, string) {
			var cur taskerv1alpha1.Task
			if err := c.Get(ctx, client.ObjectKeyFromObject(tk), &cur); err != nil {
				return false, err.Error()
			}
			st, err := eng.GetTask(ctx, cur.Status.TaskID)
			if err != nil {
				return false, err.Error()
			}
			dbTask = st
			c, sc := st.Counts, cur.Status.StepCounts
			same := strings.EqualFold(string(cur.Status.Phase), string(st.Phase)) && sc.Total == int32(len(st.Steps)) &&
				sc.Succeeded == int32(c[engine.StepSucceeded]) && sc.Failed == int32(c[engine.StepFailed]) &&
				sc.Cancelled == int32(c[engine.StepCancelled]) && sc.Skipped == int32(c[engine.StepSkipped])
			return same, fmt.Sprintf("Task %s: status %s %+v, database %s %v", tk.Name, cur.Status.Phase, sc, st.Phase, c)
		})
		res.steps += len(dbTask.Steps)
		switch {
		case strings.HasPrefix(tk.Name, "child-"):
			if run := dbTask.Step("run"); string(run.Result) != childGathered {
				t.Errorf("Task %s: the children gave %s, want %s", tk.Name, run.Result, childGathered)
			}
		case strings.HasPrefix(tk.Name, "map-"):
			if each := dbTask.Step("each"); string(each.Result) != mapGathered || each.Map == nil || each.Map.Items != 30 {
				t.Errorf("Task %s: map step gathered %s (%+v)", tk.Name, each.Result, each.Map)
			}
			res.steps += 30
		case strings.HasPrefix(tk.Name, "wait-"):
			if r := string(dbTask.Step("gate").Result); r != `{"go": true}` {
				t.Errorf("Task %s: the wait's result is %s, want the signal's payload", tk.Name, r)
			}
		}
	}

	// History: at most one success per step; every attempt started by exactly one transition to running (a release
	// gives its attempt back), or to waiting (a wait) or mapping (a map step's expansion).
	var dup, badAttempts int
	if err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM (SELECT step_id FROM tasker.step_transitions WHERE to_state = 'succeeded'
		                       GROUP BY step_id HAVING count(*) > 1) AS d),
		(SELECT count(*) FROM tasker.steps AS s
		 WHERE s.attempts <> (SELECT count(*) FILTER (WHERE x.to_state IN ('running', 'waiting', 'mapping'))
		                             - count(*) FILTER (WHERE x.reason = 'released')
		                      FROM tasker.step_transitions AS x WHERE x.task_id = s.task_id AND x.step_id = s.id))`).
		Scan(&dup, &badAttempts); err != nil {
		t.Fatal(err)
	}
	res.duplicated = dup
	if dup != 0 {
		t.Errorf("%d steps succeeded more than once", dup)
	}
	if badAttempts != 0 {
		t.Errorf("%d steps whose attempt count differs from their history", badAttempts)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT queue_length FROM pgmq.metrics($1::text)`, queuescope.Namespaced(ns, "chaos")).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d messages left in queue chaos", left)
	}
	return res
}

func waitUntil(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after %s: %s", d, why)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeReport replaces the figures between the markers of the report file.
func writeReport(t *testing.T, path string, r result) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- chaos:begin -->", "<!-- chaos:end -->"
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %s ... %s markers", path, begin, end)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	block := fmt.Sprintf("%s\n| run | Tasks | steps | duration | worker kills | operator kills | PostgreSQL restarts | lost | duplicated | seed | load average at the end |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|\n| %s | %d | %d | %s | %d | %d | %d | %d | %d | %d | %s |\n",
		begin, time.Now().UTC().Format("2006-01-02 15:04 UTC"), r.tasks, r.steps, r.duration.Round(time.Second),
		r.workerKills, r.operatorKills, r.pgRestarts, r.lost, r.duplicated, r.seed, strings.Join(strings.Fields(string(load))[:3], " "))
	if err := os.WriteFile(path, []byte(s[:i]+block+s[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

func build(t *testing.T, root, dir string) {
	t.Helper()
	for name, pkg := range map[string]string{"manager": "./cmd/manager", "worker": "./cmd/worker"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
}

func createDatabase(t *testing.T, ctx context.Context, adminURL, name string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(adminURL, "/postgres?", "/"+name+"?", 1)
}

// processes starts and stops the run's operator and worker processes.
type processes struct {
	t                 *testing.T
	bin, logs         string
	kubeconfig, dbURL string
	mu                sync.Mutex
	workers           []*exec.Cmd
	operators         []*operatorProc
	workerSeq         int
	// queue is the database queue the workers serve.
	queue string
}

type operatorProc struct {
	name        string
	cmd         *exec.Cmd
	metricsPort int
	exited      chan struct{}
}

func (o *operatorProc) kill() {
	_ = o.cmd.Process.Kill()
	<-o.exited
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func (p *processes) logFile(name string) *os.File {
	f, err := os.OpenFile(filepath.Join(p.logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	return f
}

// startOperator runs a manager with leader election; its metrics say whether it leads.
func (p *processes) startOperator(ctx context.Context, name string) *operatorProc {
	o := &operatorProc{name: name, metricsPort: freePort(p.t), exited: make(chan struct{})}
	log := p.logFile(name)
	o.cmd = exec.Command(filepath.Join(p.bin, "manager"), "--kubeconfig="+p.kubeconfig, "--database-url="+p.dbURL,
		"--leader-elect", "--leader-election-namespace=default",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", o.metricsPort), "--metrics-secure=false",
		"--health-probe-bind-address=0", "--upkeep-interval=2s")
	o.cmd.Env = append(os.Environ(), "ENABLE_WEBHOOKS=false") // the test process serves the webhook
	o.cmd.Stdout, o.cmd.Stderr = log, log
	o.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := o.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() { _ = o.cmd.Wait(); _ = log.Close(); close(o.exited) }()
	p.mu.Lock()
	p.operators = append(p.operators, o)
	p.mu.Unlock()
	return o
}

// leaderOf waits until one of the operators reports that it leads (controller-runtime's
// leader_election_master_status metric), and returns it.
func leaderOf(t *testing.T, ops []*operatorProc) *operatorProc {
	t.Helper()
	re := regexp.MustCompile(`(?m)^leader_election_master_status\{[^}]*\} 1$`)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, o := range ops {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", o.metricsPort))
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			var b strings.Builder
			for sc.Scan() {
				b.WriteString(sc.Text() + "\n")
			}
			_ = resp.Body.Close()
			if re.MatchString(b.String()) {
				return o
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no operator leads")
	return nil
}

func (p *processes) startWorker() {
	p.mu.Lock()
	p.workerSeq++
	name := fmt.Sprintf("worker-%03d", p.workerSeq)
	p.mu.Unlock()
	log := p.logFile(name)
	cmd := exec.Command(filepath.Join(p.bin, "worker"), "--database-url="+p.dbURL, "--queues="+p.queue, "--slots=8",
		"--id="+name, "--visibility-timeout=5s", "--poll-interval=200ms", "--metrics-bind-address=0", "--log-format=text")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); _ = log.Close() }()
	p.mu.Lock()
	p.workers = append(p.workers, cmd)
	p.mu.Unlock()
}

func (p *processes) killRandomWorker(rng *rand.Rand) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.workers) == 0 {
		return
	}
	i := rng.IntN(len(p.workers))
	_ = p.workers[i].Process.Kill()
	p.workers = append(p.workers[:i], p.workers[i+1:]...)
}

func (p *processes) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		_ = w.Process.Kill()
	}
	for _, o := range p.operators {
		_ = o.cmd.Process.Kill()
	}
}
