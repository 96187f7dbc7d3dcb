package workers

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/enginetest"
)

// python is Debian's interpreter, which sees python3-psycopg2 (a python3 first on PATH may be another one).
const python = "/usr/bin/python3"

// pythonWorker returns the example worker's script, skipping (or failing, in CI) when psycopg2 is missing.
func pythonWorker(t *testing.T) string {
	t.Helper()
	if err := exec.Command(python, "-c", "import psycopg2").Run(); err != nil {
		msg := "python3-psycopg2 is not installed for " + python + ": run hack/python-deps.sh (make test does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "python-worker", "worker.py")
}

// waitFinished waits until the task is finished and returns its state.
func waitFinished(t *testing.T, tb *testBundle, taskID int64, d time.Duration) *engine.TaskState {
	t.Helper()
	ts, err := enginetest.WaitTask(tb.ctx, tb.eng, taskID, d)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// Acceptance 3: a worker written in Python, using only the SQL protocol, runs a diamond DAG to completion — and a
// map step (forEach), whose instances it runs with their items.
func TestPythonWorkerDiamond(t *testing.T) {
	script := pythonWorker(t)
	tb := setup(t)
	retry := engine.RetryPolicy{BackoffBase: 100 * time.Millisecond, Jitter: engine.NoJitter}
	a, err := tb.eng.Admit(tb.ctx, engine.TaskSpec{
		ExternalKey: "py-diamond", Queue: "py",
		Steps: []engine.StepSpec{
			{Name: "a", Handler: "echo", Inputs: json.RawMessage(`{"n":1}`)},
			{Name: "b", Handler: "fail", Inputs: json.RawMessage(`{"failTimes":1,"message":"once"}`),
				DependsOn: []string{"a"}, Retry: retry},
			{Name: "c", Handler: "echo", Inputs: json.RawMessage(`{"n":3,"list":["x",{"y":1},null]}`), DependsOn: []string{"a"}},
			{Name: "d", Handler: "join", DependsOn: []string{"b", "c"}},
			{Name: "e", Handler: "echo", DependsOn: []string{"c"}, ForEach: "$.deps.c.list"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "python-worker", []string{"TASKER_DATABASE_URL=" + tb.url}, python, script,
		"--queue", "py", "--worker-id", "py-1", "--poll", "0.2")

	ts := waitFinished(t, tb, a.TaskID, 30*time.Second)
	if ts.Phase != engine.TaskSucceeded {
		t.Fatalf("task %s: %+v", ts.Phase, ts.Steps)
	}
	if b := ts.Step("b"); b.Attempts != 2 || b.WorkerID != "py-1" {
		t.Errorf("step b: %d attempts by %q, want 2 by py-1", b.Attempts, b.WorkerID)
	}
	var d map[string]json.RawMessage
	if err := json.Unmarshal(ts.Step("d").Result, &d); err != nil {
		t.Fatal(err)
	}
	var b map[string]int
	var c struct {
		N int `json:"n"`
	}
	if err := json.Unmarshal(d["b"], &b); err != nil || b["attempt"] != 2 {
		t.Errorf("d saw b's result %s (%v)", d["b"], err)
	}
	if err := json.Unmarshal(d["c"], &c); err != nil || c.N != 3 {
		t.Errorf("d saw c's result %s (%v)", d["c"], err)
	}
	if e := ts.Step("e"); string(e.Result) != `["x", {"y": 1}, null]` || e.Map == nil || e.Map.Counts[engine.StepSucceeded] != 3 {
		t.Errorf("map step e: %s, %+v", e.Result, e.Map)
	}

	p.signal(t, os.Interrupt)
	if !p.wait(10*time.Second) || p.err != nil {
		t.Errorf("python worker did not exit cleanly: %v", p.err)
	}
}

// The Python worker heartbeats: a handler running 2.5 visibility timeouts keeps its first claim, and a handler
// whose task is cancelled stops early instead of holding the worker.
func TestPythonWorkerHeartbeats(t *testing.T) {
	script := pythonWorker(t)
	tb := setup(t)
	admit := func(key string, handler string, inputs string) int64 {
		t.Helper()
		a, err := tb.eng.Admit(tb.ctx, engine.TaskSpec{ExternalKey: key, Queue: "pyhb", Steps: []engine.StepSpec{
			{Name: "s", Handler: handler, Inputs: json.RawMessage(inputs)}}})
		if err != nil {
			t.Fatal(err)
		}
		return a.TaskID
	}
	p := startProc(t, "python-worker", []string{"TASKER_DATABASE_URL=" + tb.url}, python, script,
		"--queue", "pyhb", "--worker-id", "py-hb", "--poll", "0.2", "--visibility-timeout", "2", "--batch", "1")

	// A rival claimer polls the queue meanwhile: without heartbeats the message would be visible again after 2 s
	// and the rival would take the step over. It starts once the Python worker holds the step (on a loaded
	// machine the interpreter can take longer to start than the rival's first poll).
	long := admit("py-long", "sleep", `{"seconds":5}`)
	if err := enginetest.WaitStep(tb.ctx, tb.eng, long, "s", engine.StepRunning, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	rivalDone := make(chan struct{})
	stopRival := make(chan struct{})
	go func() {
		defer close(rivalDone)
		for {
			select {
			case <-stopRival:
				return
			case <-time.After(100 * time.Millisecond):
			}
			steps, err := tb.eng.Claim(tb.ctx, "pyhb", 1, time.Minute, "rival")
			if err != nil {
				t.Error(err)
				return
			}
			if len(steps) > 0 {
				t.Errorf("the rival claimed %s (attempt %d): the lease was not extended", steps[0].StepName,
					steps[0].Attempt)
				return
			}
		}
	}()
	ts := waitFinished(t, tb, long, 30*time.Second)
	close(stopRival)
	<-rivalDone
	if ts.Phase != engine.TaskSucceeded || ts.Step("s").Attempts != 1 {
		t.Fatalf("5 s step with a 2 s visibility timeout: task %s after %d attempts, want succeeded after 1",
			ts.Phase, ts.Step("s").Attempts)
	}

	stuck := admit("py-cancelled", "sleep", `{"seconds":600}`)
	if err := enginetest.WaitStep(tb.ctx, tb.eng, stuck, "s", engine.StepRunning, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tb.eng.Cancel(tb.ctx, stuck, "test"); err != nil {
		t.Fatal(err)
	}
	// The worker handles one step at a time: the next one runs only if the cancelled handler gave up.
	next := admit("py-next", "echo", `{"n":1}`)
	if ts := waitFinished(t, tb, next, 15*time.Second); ts.Phase != engine.TaskSucceeded {
		t.Fatalf("task after the cancelled one: %s", ts.Phase)
	}
	if ts := waitFinished(t, tb, stuck, time.Second); ts.Phase != engine.TaskCancelled {
		t.Errorf("cancelled task: %s", ts.Phase)
	}

	p.signal(t, os.Interrupt)
	if !p.wait(10*time.Second) || p.err != nil {
		t.Errorf("python worker did not exit cleanly: %v", p.err)
	}
}

// The Python worker hands the task's trace context to its handlers (docs/tracing.md): without the OpenTelemetry
// SDK (not installed here) step["traceparent"] is the task's own, passed through; with it, the step span's, in
// the same trace.
func TestPythonWorkerPropagatesTraceContext(t *testing.T) {
	script := pythonWorker(t)
	tb := setup(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	tc := map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01", "tracestate": "k=v"}
	a, err := tb.eng.Admit(tb.ctx, engine.TaskSpec{ExternalKey: "py-trace", Queue: "pytrace", TraceContext: tc,
		Steps: []engine.StepSpec{{Name: "a", Handler: "traceparent"}, {Name: "b", Handler: "traceparent", DependsOn: []string{"a"}}}})
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "python-worker", []string{"TASKER_DATABASE_URL=" + tb.url}, python, script,
		"--queue", "pytrace", "--worker-id", "py-trace", "--poll", "0.2")
	ts := waitFinished(t, tb, a.TaskID, 30*time.Second)
	if ts.Phase != engine.TaskSucceeded {
		t.Fatalf("task %s: %+v", ts.Phase, ts.Steps)
	}
	// a came from claim, b from complete_and_claim.
	for _, name := range []string{"a", "b"} {
		var got map[string]string
		if err := json.Unmarshal(ts.Step(name).Result, &got); err != nil {
			t.Fatal(err)
		}
		if parts := strings.Split(got["traceparent"], "-"); len(parts) != 4 || parts[1] != traceID || got["tracestate"] != "k=v" {
			t.Errorf("step %s: handler saw trace context %v, want trace %s with tracestate k=v", name, got, traceID)
		}
	}
	p.signal(t, os.Interrupt)
	if !p.wait(10*time.Second) || p.err != nil {
		t.Errorf("python worker did not exit cleanly: %v", p.err)
	}
}
