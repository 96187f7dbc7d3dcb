package workers

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// Acceptance 2: SIGTERM to a worker in the middle of 10-second handlers: the handlers finish, nothing is retried
// because of the drain, and the process exits (code 0) within the grace period.
func TestDrainOnSIGTERM(t *testing.T) {
	tb := setup(t)
	const (
		slots   = 4
		grace   = 20 * time.Second
		handler = 10 * time.Second
	)
	p := tb.startWorker(t, "drainer", "--slots", fmt.Sprint(slots), "--visibility-timeout", "4s",
		"--drain-timeout", grace.String())

	steps := make([]engine.StepSpec, slots+2) // two more than the worker can start
	for i := range steps {
		steps[i] = engine.StepSpec{Name: fmt.Sprintf("s%d", i), Handler: "sleep",
			Inputs: json.RawMessage(fmt.Sprintf(`{"seconds":%d}`, int(handler.Seconds())))}
	}
	a, err := tb.eng.Admit(tb.ctx, engine.TaskSpec{ExternalKey: "drain", Queue: "default", Steps: steps})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the worker runs a full load, then let the handlers get well into their work (and past a few
	// heartbeats: the lease is shorter than the handlers).
	deadline := time.Now().Add(15 * time.Second)
	for tb.stepStates(t)["running"] < slots {
		if time.Now().After(deadline) {
			t.Fatalf("worker did not start %d steps: %v", slots, tb.stepStates(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var startedAt time.Time
	if err := tb.pool.QueryRow(tb.ctx, `SELECT max(started_at) FROM tasker.steps WHERE state = 'running'`).
		Scan(&startedAt); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)

	p.signal(t, syscall.SIGTERM)
	termAt := time.Now()
	if !p.wait(grace + 5*time.Second) {
		t.Fatalf("worker still running %s after SIGTERM", time.Since(termAt))
	}
	took := time.Since(termAt)
	if p.err != nil {
		t.Errorf("worker exited with %v, want 0", p.err)
	}
	// The handlers had ~6 s left: the worker waited for them, and did not wait for the whole grace period.
	t.Logf("worker exited %s after SIGTERM", took.Round(time.Millisecond))
	if took > grace {
		t.Errorf("exit took %s, longer than the grace period %s", took, grace)
	}
	if remaining := handler - time.Since(startedAt) + took; took < 3*time.Second {
		t.Errorf("exit after %s: the handlers (%s left) cannot have finished", took, remaining)
	}

	ts, err := tb.eng.GetTask(tb.ctx, a.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if ts.Counts[engine.StepSucceeded] != slots || ts.Counts[engine.StepEnqueued] != 2 {
		t.Errorf("step counts after the drain: %v", ts.Counts)
	}
	for _, s := range ts.Steps {
		switch s.Phase {
		case engine.StepSucceeded:
			if s.Attempts != 1 {
				t.Errorf("step %s succeeded after %d attempts", s.Name, s.Attempts)
			}
		case engine.StepEnqueued:
			if s.Attempts != 0 {
				t.Errorf("step %s waits with %d attempts", s.Name, s.Attempts)
			}
		}
	}
	var retried int
	if err := tb.pool.QueryRow(tb.ctx, `
		SELECT count(*) FROM tasker.step_transitions
		WHERE task_id = $1 AND (to_state = 'retrying' OR attempt > 1 OR (from_state = 'running' AND to_state = 'enqueued'))`,
		a.TaskID).Scan(&retried); err != nil {
		t.Fatal(err)
	}
	if retried != 0 {
		t.Errorf("%d retry or release transitions: the drain interrupted work", retried)
	}
	var records int
	if err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM tasker.workers`).Scan(&records); err != nil {
		t.Fatal(err)
	}
	if records != 0 {
		t.Errorf("the worker's record was not removed")
	}
}
