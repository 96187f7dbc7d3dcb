package workers

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// python is Debian's interpreter, which sees python3-psycopg2 (a python3 first on PATH may be another one).
const python = "/usr/bin/python3"

// Acceptance 3: a worker written in Python, using only the SQL protocol, runs a diamond DAG to completion.
func TestPythonWorkerDiamond(t *testing.T) {
	if err := exec.Command(python, "-c", "import psycopg2").Run(); err != nil {
		msg := "python3-psycopg2 is not installed for " + python + ": run hack/python-deps.sh (make test does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "examples", "python-worker", "worker.py")

	tb := setup(t)
	retry := engine.RetryPolicy{BackoffBase: 100 * time.Millisecond, Jitter: engine.NoJitter}
	a, err := tb.eng.Admit(tb.ctx, engine.TaskSpec{
		ExternalKey: "py-diamond", Queue: "py",
		Steps: []engine.StepSpec{
			{Name: "a", Handler: "echo", Inputs: json.RawMessage(`{"n":1}`)},
			{Name: "b", Handler: "fail", Inputs: json.RawMessage(`{"failTimes":1,"message":"once"}`),
				DependsOn: []string{"a"}, Retry: retry},
			{Name: "c", Handler: "echo", Inputs: json.RawMessage(`{"n":3}`), DependsOn: []string{"a"}},
			{Name: "d", Handler: "join", DependsOn: []string{"b", "c"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "python-worker", []string{"TASKER_DATABASE_URL=" + tb.url}, python, script,
		"--queue", "py", "--worker-id", "py-1", "--poll", "0.2")

	deadline := time.Now().Add(30 * time.Second)
	var ts *engine.TaskState
	for {
		if ts, err = tb.eng.GetTask(tb.ctx, a.TaskID); err != nil {
			t.Fatal(err)
		}
		if ts.Phase.Finished() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task still %s: %v", ts.Phase, ts.Counts)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	var b, c map[string]int
	if err := json.Unmarshal(d["b"], &b); err != nil || b["attempt"] != 2 {
		t.Errorf("d saw b's result %s (%v)", d["b"], err)
	}
	if err := json.Unmarshal(d["c"], &c); err != nil || c["n"] != 3 {
		t.Errorf("d saw c's result %s (%v)", d["c"], err)
	}

	p.signal(t, os.Interrupt)
	if !p.wait(10*time.Second) || p.err != nil {
		t.Errorf("python worker did not exit cleanly: %v", p.err)
	}
}
