package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/enginetest"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type testBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	eng  *engine.Engine
	logs *syncBuffer
}

// syncBuffer collects a test's worker logs (printed when the test fails).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	pool := pgtest.NewPool(t)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	tb := &testBundle{ctx: ctx, pool: pool, eng: engine.New(pool, engine.Options{}), logs: &syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", tb.logs.String())
		}
	})
	return tb
}

// config is a test worker's configuration: fast polls, logs into the bundle.
func (tb *testBundle) config(id string) worker.Config {
	return worker.Config{
		Queues:            []string{"default"},
		ID:                id,
		VisibilityTimeout: 3 * time.Second,
		PollInterval:      200 * time.Millisecond,
		DrainTimeout:      5 * time.Second,
		Logger:            slog.New(slog.NewTextHandler(tb.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// start runs w until the test ends (or stop is called); stop waits for Run to return and reports its error.
func (tb *testBundle) start(t *testing.T, w *worker.Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func (tb *testBundle) newWorker(t *testing.T, cfg worker.Config) *worker.Worker {
	t.Helper()
	w, err := worker.New(tb.pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (tb *testBundle) admit(t *testing.T, key string, steps ...engine.StepSpec) int64 {
	t.Helper()
	a, err := tb.eng.Admit(tb.ctx, engine.TaskSpec{ExternalKey: key, Queue: "default", Steps: steps,
		Context: json.RawMessage(`{"tenant":"acme"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return a.TaskID
}

// waitTask waits until the task is finished and returns its state.
func (tb *testBundle) waitTask(t *testing.T, id int64, timeout time.Duration) *engine.TaskState {
	t.Helper()
	ts, err := enginetest.WaitTask(tb.ctx, tb.eng, id, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// waitStep waits until a step reaches phase.
func (tb *testBundle) waitStep(t *testing.T, id int64, step string, phase engine.StepPhase, timeout time.Duration) {
	t.Helper()
	if err := enginetest.WaitStep(tb.ctx, tb.eng, id, step, phase, timeout); err != nil {
		t.Fatal(err)
	}
}

type transition = enginetest.Transition

func (tb *testBundle) transitions(t *testing.T, taskID int64) []transition {
	t.Helper()
	out, err := enginetest.StepTransitions(tb.ctx, tb.pool, taskID)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func echo(_ context.Context, s worker.Step) (worker.Result, error) { return s.Inputs, nil }

func TestDiamond(t *testing.T) {
	tb := setup(t)
	w := tb.newWorker(t, tb.config("w1"))
	var mu sync.Mutex
	seen := map[string]worker.Step{}
	w.Handle("record", func(_ context.Context, s worker.Step) (worker.Result, error) {
		mu.Lock()
		seen[s.Name] = s
		mu.Unlock()
		return map[string]string{"from": s.Name}, nil
	})
	tb.start(t, w)

	id := tb.admit(t, "diamond",
		engine.StepSpec{Name: "a", Handler: "record", Inputs: json.RawMessage(`{"n":1}`)},
		engine.StepSpec{Name: "b", Handler: "record", DependsOn: []string{"a"}},
		engine.StepSpec{Name: "c", Handler: "record", DependsOn: []string{"a"}},
		engine.StepSpec{Name: "d", Handler: "record", DependsOn: []string{"b", "c"}},
	)
	ts := tb.waitTask(t, id, 10*time.Second)
	if ts.Phase != engine.TaskSucceeded {
		t.Fatalf("task %s", ts.Phase)
	}
	mu.Lock()
	defer mu.Unlock()
	a := seen["a"]
	var in struct{ N int }
	if err := a.DecodeInputs(&in); err != nil || in.N != 1 {
		t.Errorf("inputs of a: %v %+v", err, in)
	}
	var tctx struct{ Tenant string }
	if err := a.DecodeContext(&tctx); err != nil || tctx.Tenant != "acme" {
		t.Errorf("task context: %v %+v", err, tctx)
	}
	if a.TaskID != id || a.Attempt != 1 || a.WorkerID != "w1" || a.Queue != "default" || a.Handler != "record" {
		t.Errorf("step a: %+v", a)
	}
	d := seen["d"]
	if len(d.DependencyResults) != 2 {
		t.Fatalf("dependency results of d: %v", d.DependencyResults)
	}
	for _, dep := range []string{"b", "c"} {
		var r struct{ From string }
		if err := d.DecodeDependency(dep, &r); err != nil || r.From != dep {
			t.Errorf("result of %s seen by d: %v %+v", dep, err, r)
		}
	}
	if got := string(ts.Step("d").Result); got != `{"from": "d"}` && got != `{"from":"d"}` {
		t.Errorf("result of d: %s", got)
	}
}

func TestRetriesAndPermanentFailure(t *testing.T) {
	tb := setup(t)
	w := tb.newWorker(t, tb.config("w1"))
	var flaky atomic.Int32
	w.Handle("flaky", func(_ context.Context, s worker.Step) (worker.Result, error) {
		flaky.Add(1)
		if s.Attempt <= 2 {
			return nil, fmt.Errorf("attempt %d failed", s.Attempt)
		}
		return "ok", nil
	})
	w.Handle("limited", func(_ context.Context, s worker.Step) (worker.Result, error) {
		if s.Attempt == 1 {
			return nil, worker.RetryAfter(errors.New("rate limited"), 700*time.Millisecond)
		}
		return "ok", nil
	})
	w.Handle("broken", func(context.Context, worker.Step) (worker.Result, error) {
		return nil, worker.Permanent(errors.New("bad input"))
	})
	w.Handle("panics", func(_ context.Context, s worker.Step) (worker.Result, error) {
		if s.Attempt == 1 {
			panic("kaboom")
		}
		return "recovered", nil
	})
	w.Handle("never", echo)
	tb.start(t, w)

	fast := engine.RetryPolicy{BackoffBase: 50 * time.Millisecond, Jitter: engine.NoJitter}
	retried := tb.admit(t, "retried", engine.StepSpec{Name: "s", Handler: "flaky", Retry: fast})
	limited := tb.admit(t, "limited", engine.StepSpec{Name: "s", Handler: "limited", Retry: fast})
	panics := tb.admit(t, "panics", engine.StepSpec{Name: "s", Handler: "panics", Retry: fast})
	broken := tb.admit(t, "broken",
		engine.StepSpec{Name: "s", Handler: "broken"},
		engine.StepSpec{Name: "after", Handler: "never", DependsOn: []string{"s"}})

	ts := tb.waitTask(t, retried, 10*time.Second)
	if ts.Phase != engine.TaskSucceeded || ts.Step("s").Attempts != 3 || flaky.Load() != 3 {
		t.Errorf("flaky: task %s, attempts %d, calls %d", ts.Phase, ts.Step("s").Attempts, flaky.Load())
	}

	ts = tb.waitTask(t, limited, 10*time.Second)
	if ts.Phase != engine.TaskSucceeded {
		t.Errorf("limited: %s", ts.Phase)
	}
	var failedAt, claimedAt time.Time
	for _, tr := range tb.transitions(t, limited) {
		if tr.To == "retrying" {
			failedAt = tr.At
		}
		if tr.To == "running" && tr.Attempt == 2 {
			claimedAt = tr.At
		}
	}
	if gap := claimedAt.Sub(failedAt); gap < 700*time.Millisecond {
		t.Errorf("retry-after not honoured: second attempt %s after the failure", gap)
	}

	ts = tb.waitTask(t, panics, 10*time.Second)
	if ts.Phase != engine.TaskSucceeded {
		t.Errorf("panics: %s", ts.Phase)
	}

	ts = tb.waitTask(t, broken, 10*time.Second)
	if ts.Phase != engine.TaskFailed || ts.Step("s").Attempts != 1 || ts.Step("after").Phase != engine.StepSkipped {
		t.Errorf("broken: task %s, step %+v, after %s", ts.Phase, ts.Step("s"), ts.Step("after").Phase)
	}
	if msg := ts.Step("s").LastErrorMessage; msg != "bad input" {
		t.Errorf("last error %q", msg)
	}
}

func TestUnknownHandlerAndStepTimeout(t *testing.T) {
	tb := setup(t)
	w := tb.newWorker(t, tb.config("w1"))
	var cause atomic.Value
	w.Handle("hangs", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		<-ctx.Done()
		cause.Store(context.Cause(ctx))
		return nil, ctx.Err()
	})
	tb.start(t, w)
	once := engine.RetryPolicy{MaxAttempts: 1}
	unknown := tb.admit(t, "unknown", engine.StepSpec{Name: "s", Handler: "nobody", Retry: once})
	hangs := tb.admit(t, "hangs", engine.StepSpec{Name: "s", Handler: "hangs", Retry: once, Timeout: time.Second})

	ts := tb.waitTask(t, unknown, 10*time.Second)
	if ts.Phase != engine.TaskFailed || !strings.Contains(ts.Step("s").LastErrorMessage, `no handler "nobody"`) {
		t.Errorf("unknown handler: %s %q", ts.Phase, ts.Step("s").LastErrorMessage)
	}
	ts = tb.waitTask(t, hangs, 10*time.Second)
	if ts.Phase != engine.TaskFailed {
		t.Errorf("timed out step: task %s", ts.Phase)
	}
	if c, _ := cause.Load().(error); !errors.Is(c, worker.ErrStepTimeout) {
		t.Errorf("cause = %v, want ErrStepTimeout", c)
	}
}

// Acceptance 4: cancelling the task cancels a running handler's context within one heartbeat interval.
func TestCancelTaskCancelsHandler(t *testing.T) {
	tb := setup(t)
	cfg := tb.config("w1")
	cfg.VisibilityTimeout = 3 * time.Second
	cfg.HeartbeatInterval = time.Second
	w := tb.newWorker(t, cfg)
	started := make(chan struct{})
	type stop struct {
		at    time.Time
		cause error
	}
	stopped := make(chan stop, 1)
	w.Handle("long", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		close(started)
		select {
		case <-ctx.Done():
			stopped <- stop{time.Now(), context.Cause(ctx)}
			return nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return "finished", nil
		}
	})
	tb.start(t, w)
	id := tb.admit(t, "cancel-me", engine.StepSpec{Name: "s", Handler: "long"})
	<-started
	time.Sleep(1500 * time.Millisecond) // a heartbeat or two went by: cancel between two of them
	cancelledAt := time.Now()
	if err := tb.eng.Cancel(tb.ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-stopped:
		took := s.at.Sub(cancelledAt)
		t.Logf("handler saw the cancellation %s after it (heartbeat interval %s)", took, cfg.HeartbeatInterval)
		// One interval, plus the heartbeat's round trip (generous: test machines are busy).
		if took > cfg.HeartbeatInterval+500*time.Millisecond {
			t.Errorf("handler cancelled %s after the task, want within one heartbeat interval (%s)", took,
				cfg.HeartbeatInterval)
		}
		if !errors.Is(s.cause, worker.ErrStopped) {
			t.Errorf("cause = %v, want ErrStopped", s.cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler not cancelled")
	}
	ts := tb.waitTask(t, id, 5*time.Second)
	if ts.Phase != engine.TaskCancelled || ts.Step("s").Phase != engine.StepCancelled {
		t.Errorf("task %s step %s", ts.Phase, ts.Step("s").Phase)
	}
}

// A handler running longer than the visibility timeout keeps its lease through heartbeats: one attempt only.
func TestHeartbeatKeepsLease(t *testing.T) {
	tb := setup(t)
	cfg := tb.config("w1")
	cfg.VisibilityTimeout = 2 * time.Second
	cfg.HeartbeatInterval = 500 * time.Millisecond
	w := tb.newWorker(t, cfg)
	var calls atomic.Int32
	w.Handle("slow", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		calls.Add(1)
		select {
		case <-time.After(5 * time.Second):
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	// A second worker would steal the step if the lease lapsed.
	w2 := tb.newWorker(t, func() worker.Config { c := cfg; c.ID = "w2"; return c }())
	w2.Handle("slow", func(context.Context, worker.Step) (worker.Result, error) {
		calls.Add(1)
		return "stolen", nil
	})
	tb.start(t, w)
	id := tb.admit(t, "slow", engine.StepSpec{Name: "s", Handler: "slow"})
	tb.waitStep(t, id, "s", engine.StepRunning, 5*time.Second)
	tb.start(t, w2)
	ts := tb.waitTask(t, id, 15*time.Second)
	if ts.Phase != engine.TaskSucceeded || ts.Step("s").Attempts != 1 || calls.Load() != 1 ||
		string(ts.Step("s").Result) != `"done"` {
		t.Errorf("task %s, attempts %d, calls %d, result %s", ts.Phase, ts.Step("s").Attempts, calls.Load(),
			ts.Step("s").Result)
	}
}

// Drain: in-flight handlers finish, nothing is retried, claimed-but-idle work stays in the queue.
func TestDrainLetsHandlersFinish(t *testing.T) {
	tb := setup(t)
	cfg := tb.config("w1")
	cfg.Slots = 2
	cfg.DrainTimeout = 10 * time.Second
	w := tb.newWorker(t, cfg)
	var running atomic.Int32
	w.Handle("work", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		running.Add(1)
		select {
		case <-time.After(time.Second):
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	stop := tb.start(t, w)
	id := tb.admit(t, "drain",
		engine.StepSpec{Name: "a", Handler: "work"}, engine.StepSpec{Name: "b", Handler: "work"},
		engine.StepSpec{Name: "c", Handler: "work"})
	for running.Load() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("drain took %s", took)
	}
	ts, err := tb.eng.GetTask(tb.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Counts[engine.StepSucceeded] != 2 || ts.Counts[engine.StepEnqueued] != 1 {
		t.Errorf("counts after drain: %v", ts.Counts)
	}
	for _, tr := range tb.transitions(t, id) {
		if tr.To == "retrying" || tr.Attempt > 1 {
			t.Errorf("unexpected transition after drain: %+v", tr)
		}
	}
	var n int
	if err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM tasker.workers`).Scan(&n); err != nil || n != 0 {
		t.Errorf("worker record not removed: %d %v", n, err)
	}
}

// Drain timeout: handlers still running are cancelled and their steps released without counting the attempt.
func TestDrainTimeoutReleasesSteps(t *testing.T) {
	tb := setup(t)
	cfg := tb.config("w1")
	cfg.DrainTimeout = 300 * time.Millisecond
	w := tb.newWorker(t, cfg)
	started := make(chan struct{}, 1)
	var cause atomic.Value
	w.Handle("long", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		started <- struct{}{}
		<-ctx.Done()
		cause.Store(context.Cause(ctx))
		return nil, ctx.Err()
	})
	stop := tb.start(t, w)
	id := tb.admit(t, "release", engine.StepSpec{Name: "s", Handler: "long"})
	<-started
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Run returned %s after the stop", took)
	}
	if c, _ := cause.Load().(error); !errors.Is(c, worker.ErrDraining) {
		t.Errorf("cause = %v", c)
	}
	ts, err := tb.eng.GetTask(tb.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s := ts.Step("s"); s.Phase != engine.StepEnqueued || s.Attempts != 0 {
		t.Errorf("step after drain: %s, %d attempts", s.Phase, s.Attempts)
	}
	trs := tb.transitions(t, id)
	if last := trs[len(trs)-1]; last.From != "running" || last.To != "enqueued" || last.Reason != "released" {
		t.Errorf("last transition %+v", last)
	}

	// Another worker picks it up as attempt 1.
	w2 := tb.newWorker(t, tb.config("w2"))
	w2.Handle("long", echo)
	tb.start(t, w2)
	ts = tb.waitTask(t, id, 10*time.Second)
	if ts.Phase != engine.TaskSucceeded || ts.Step("s").Attempts != 1 {
		t.Errorf("after release: %s, %d attempts", ts.Phase, ts.Step("s").Attempts)
	}
}

func TestWorkerRecordAndMetrics(t *testing.T) {
	tb := setup(t)
	cfg := tb.config("pod-a")
	cfg.Slots = 3
	cfg.RecordInterval = 100 * time.Millisecond
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	w := tb.newWorker(t, cfg)
	release := make(chan struct{})
	w.Handle("block", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		<-release
		return nil, nil
	})
	w.Handle("fail", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		return nil, worker.Permanent(errors.New("no"))
	})
	// A second worker on the same registry shares the metrics instead of failing.
	if _, err := worker.New(tb.pool, cfg); err != nil {
		t.Fatalf("second worker on the same registry: %v", err)
	}
	stop := tb.start(t, w)
	id := tb.admit(t, "rec", engine.StepSpec{Name: "a", Handler: "block"}, engine.StepSpec{Name: "b", Handler: "block"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		var inFlight, slots int
		var queues []string
		err := tb.pool.QueryRow(tb.ctx, `SELECT in_flight, slots, queues FROM tasker.workers WHERE id = 'pod-a'`).
			Scan(&inFlight, &slots, &queues)
		if err == nil && inFlight == 2 && slots == 3 && len(queues) == 1 && queues[0] == "default" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker record: in_flight %d slots %d queues %v err %v", inFlight, slots, queues, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := metricSums(t, reg)["tasker_worker_in_flight"]; got != 2 {
		t.Errorf("in-flight gauge = %v", got)
	}
	close(release)
	tb.waitTask(t, id, 5*time.Second)
	failed := tb.admit(t, "fails", engine.StepSpec{Name: "a", Handler: "fail"})
	tb.waitTask(t, failed, 5*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"tasker_worker_steps_claimed_total":   3,
		"tasker_worker_steps_succeeded_total": 2,
		"tasker_worker_steps_failed_total":    1,
		"tasker_worker_in_flight":             0,
	}
	got := metricSums(t, reg)
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if got["tasker_worker_handler_duration_seconds"] != 3 {
		t.Errorf("handler duration samples = %v", got["tasker_worker_handler_duration_seconds"])
	}
	// Protocol calls: the claims (at least one per queue poll), the successes' reports (one or two batches) and
	// the one failure.
	calls := histogramCounts(t, reg, "tasker_worker_protocol_call_duration_seconds", "call")
	if calls["claim"] == 0 || calls["complete"] == 0 || calls["complete"] > 2 || calls["fail"] != 1 || len(calls) != 3 {
		t.Errorf("protocol call samples %v, want claim > 0, complete 1 or 2, fail 1", calls)
	}
}

// metricSums adds up every series of each metric (histograms: their sample counts).
func metricSums(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	eachSeries(t, reg, func(name string, m *dto.Metric) {
		switch {
		case m.Counter != nil:
			got[name] += m.Counter.GetValue()
		case m.Gauge != nil:
			got[name] += m.Gauge.GetValue()
		case m.Histogram != nil:
			got[name] += float64(m.Histogram.GetSampleCount())
		}
	})
	return got
}

// histogramCounts returns the sample counts of a histogram's series, by the value of one label.
func histogramCounts(t *testing.T, reg *prometheus.Registry, name, label string) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	eachSeries(t, reg, func(n string, m *dto.Metric) {
		for _, l := range m.GetLabel() {
			if n == name && l.GetName() == label {
				got[l.GetValue()] += m.GetHistogram().GetSampleCount()
			}
		}
	})
	return got
}

// eachSeries calls f with every series reg gathers.
func eachSeries(t *testing.T, reg *prometheus.Registry, f func(name string, m *dto.Metric)) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			f(mf.GetName(), m)
		}
	}
}

// Many workers, many tasks: every step runs and succeeds once; results flow down a chain.
func TestManyWorkersChain(t *testing.T) {
	tb := setup(t)
	var calls atomic.Int64
	for i := range 3 {
		cfg := tb.config(fmt.Sprintf("w%d", i))
		cfg.Slots = 8
		w := tb.newWorker(t, cfg)
		w.Handle("add", func(_ context.Context, s worker.Step) (worker.Result, error) {
			calls.Add(1)
			sum := 0
			for name := range s.DependencyResults {
				var v int
				if err := s.DecodeDependency(name, &v); err != nil {
					return nil, worker.Permanent(err)
				}
				sum += v
			}
			return sum + 1, nil
		})
		tb.start(t, w)
	}
	const tasks, length = 20, 10
	ids := make([]int64, tasks)
	for i := range ids {
		steps := make([]engine.StepSpec, length)
		for j := range steps {
			steps[j] = engine.StepSpec{Name: fmt.Sprintf("s%d", j), Handler: "add"}
			if j > 0 {
				steps[j].DependsOn = []string{fmt.Sprintf("s%d", j-1)}
			}
		}
		ids[i] = tb.admit(t, fmt.Sprintf("chain-%d", i), steps...)
	}
	for _, id := range ids {
		ts := tb.waitTask(t, id, 20*time.Second)
		if ts.Phase != engine.TaskSucceeded || string(ts.Step(fmt.Sprintf("s%d", length-1)).Result) != "10" {
			t.Errorf("task %d: %s, last result %s", id, ts.Phase, ts.Step(fmt.Sprintf("s%d", length-1)).Result)
		}
	}
	if calls.Load() != tasks*length {
		t.Errorf("%d handler calls, want %d", calls.Load(), tasks*length)
	}
}

func TestNewAndHandleMisuse(t *testing.T) {
	tb := setup(t)
	if _, err := worker.New(nil, worker.Config{Queues: []string{"q"}}); err == nil {
		t.Error("nil pool accepted")
	}
	if _, err := worker.New(tb.pool, worker.Config{}); err == nil {
		t.Error("no queues accepted")
	}
	w := tb.newWorker(t, tb.config("w"))
	w.Handle("x", echo)
	mustPanic(t, "duplicate", func() { w.Handle("x", echo) })
	mustPanic(t, "nil handler", func() { w.Handle("y", nil) })
	stop := tb.start(t, w)
	time.Sleep(50 * time.Millisecond)
	mustPanic(t, "after Run", func() { w.Handle("z", echo) })
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	f()
}

func TestOpen(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	w, err := worker.Open(ctx, url, worker.Config{Queues: []string{"default"}, ID: "opened",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.ID() != "opened" {
		t.Errorf("ID %q", w.ID())
	}
	if _, err := worker.Open(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=1", worker.Config{
		Queues: []string{"q"}}); err == nil {
		t.Error("Open of an unreachable database succeeded")
	}
}

// A result jsonb cannot store (U+0000 in a string) or larger than engine.MaxResultSize fails its own step, with the
// reason recorded, while steps claimed with it are not affected; an error message holding U+0000 is recorded
// too. (Before, such a result made the report fail on every retry and the step failed as "lease expired", its real
// error lost: issue 13.)
func TestUnrecordableResultsFailTheirStepOnly(t *testing.T) {
	tb := setup(t)
	w := tb.newWorker(t, tb.config("w1"))
	w.Handle("nul", func(context.Context, worker.Step) (worker.Result, error) {
		return map[string]string{"text": "a\x00b"}, nil
	})
	w.Handle("huge", func(context.Context, worker.Step) (worker.Result, error) {
		return strings.Repeat("x", engine.MaxResultSize), nil
	})
	w.Handle("nulerror", func(context.Context, worker.Step) (worker.Result, error) {
		return nil, worker.Permanent(errors.New("bad byte \x00 in input"))
	})
	w.Handle("echo", echo)
	tb.start(t, w)

	nul := tb.admit(t, "nul", engine.StepSpec{Name: "s", Handler: "nul"})
	fine := tb.admit(t, "fine", engine.StepSpec{Name: "ok", Handler: "echo", Inputs: json.RawMessage(`"fine"`)})
	huge := tb.admit(t, "huge", engine.StepSpec{Name: "s", Handler: "huge"})
	nulErr := tb.admit(t, "nulerror", engine.StepSpec{Name: "s", Handler: "nulerror"})

	ts := tb.waitTask(t, nul, 10*time.Second)
	if ts.Phase != engine.TaskFailed || ts.Step("s").Attempts != 1 ||
		!strings.Contains(ts.Step("s").LastErrorMessage, "U+0000") {
		t.Errorf("nul: task %s, step %+v", ts.Phase, ts.Step("s"))
	}
	if ts := tb.waitTask(t, fine, 10*time.Second); ts.Phase != engine.TaskSucceeded || string(ts.Step("ok").Result) != `"fine"` {
		t.Errorf("a task claimed with it: %s %+v", ts.Phase, ts.Step("ok"))
	}
	ts = tb.waitTask(t, huge, 10*time.Second)
	if msg := ts.Step("s").LastErrorMessage; ts.Phase != engine.TaskFailed || !strings.Contains(msg, "more than the limit of 1048576") {
		t.Errorf("huge: task %s, error %q", ts.Phase, msg)
	}
	ts = tb.waitTask(t, nulErr, 10*time.Second)
	if msg := ts.Step("s").LastErrorMessage; ts.Phase != engine.TaskFailed || msg != "bad byte \uFFFD in input" {
		t.Errorf("nulerror: task %s, error %q", ts.Phase, msg)
	}
}
