package engine_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// An approval gate: a step that waits for a signal runs no handler and has no message; the signal completes it
// with its payload, which the next step receives. A second signal of the same name changes nothing.
func TestWaitForASignal(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "gate", Steps: []engine.StepSpec{
		{Name: "prepare", Handler: "h"},
		{Name: "approval", WaitFor: "approved", DependsOn: []string{"prepare"}},
		{Name: "deploy", Handler: "h", DependsOn: []string{"approval"}},
	}})
	prepare := b.claimOne(t, "gate", time.Minute, 5*time.Second)
	if _, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: prepare.Lease}}, 10, time.Minute, "w"); err != nil || len(claimed) != 0 {
		t.Fatalf("complete prepare: %d claimed, %v", len(claimed), err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"approval": engine.StepWaiting,
		"deploy": engine.StepPending})
	b.claimNone(t, "gate")
	if n := b.queueLength(t, "gate"); n != 0 {
		t.Fatalf("%d messages: a waiting step has none", n)
	}
	if err := b.engine.Signal(b.ctx, id, "approved", json.RawMessage(`{"by":"alice"}`), "looks good"); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.Signal(b.ctx, id, "approved", json.RawMessage(`{"by":"mallory"}`), ""); err != nil {
		t.Fatalf("a second signal: %v, want nil (noop)", err)
	}
	deploy := b.claimOne(t, "gate", time.Minute, 5*time.Second)
	if deploy.StepName != "deploy" || string(deploy.DependencyResults["approval"]) != `{"by": "alice"}` {
		t.Fatalf("claimed %s with %s", deploy.StepName, deploy.DependencyResults)
	}
	if err := b.engine.Complete(b.ctx, deploy.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
	if err := b.engine.Signal(b.ctx, id, "late", nil, ""); !errors.Is(err, engine.ErrInvalidTransition) {
		t.Errorf("signal to a succeeded task: %v, want ErrInvalidTransition", err)
	}
}

// A signal sent before its step waits is kept: the step completes as soon as it becomes ready. A root step that
// waits waits from admission.
func TestSignalBeforeTheWait(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "early", Steps: []engine.StepSpec{
		{Name: "gate", WaitFor: "go"},
		{Name: "slow", Handler: "h"},
		{Name: "second-gate", WaitFor: "go.2", DependsOn: []string{"slow"}},
		{Name: "after", Handler: "h", DependsOn: []string{"gate", "second-gate"}},
	}})
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"gate": engine.StepWaiting,
		"second-gate": engine.StepPending})
	for _, sig := range []string{"go", "go.2"} {
		if err := b.engine.Signal(b.ctx, id, sig, json.RawMessage(`1`), ""); err != nil {
			t.Fatal(err)
		}
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"gate": engine.StepSucceeded,
		"second-gate": engine.StepPending})
	slow := b.claimOne(t, "early", time.Minute, 5*time.Second)
	if err := b.engine.Complete(b.ctx, slow.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"second-gate": engine.StepSucceeded,
		"after": engine.StepEnqueued})
	if err := b.engine.Signal(b.ctx, id, "Not A Name", nil, ""); err == nil {
		t.Error("a signal with an invalid name was accepted")
	}
}

// A wait past its timeout is a failed attempt: it waits again while attempts are left, then fails the task; an
// operator's retry waits again, and a signal sent meanwhile is kept for it. Resolving or cancelling a waiting
// step works as on any step.
func TestWaitTimesOut(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "wt", Steps: []engine.StepSpec{
		{Name: "gate", WaitFor: "ok", WaitTimeout: time.Hour, Retry: engine.RetryPolicy{MaxAttempts: 2}},
		{Name: "next", Handler: "h", DependsOn: []string{"gate"}},
	}})
	later := time.Now().Add(2 * time.Hour)
	if r, err := b.engine.Upkeep(b.ctx, later); err != nil || r.TimedOut != 1 {
		t.Fatalf("first upkeep: %+v, %v", r, err)
	}
	st := b.task(t, id)
	if s := st.Step("gate"); s.Phase != engine.StepWaiting || s.Attempts != 2 || s.LastErrorMessage != "no signal ok within 3600 seconds" {
		t.Fatalf("gate after one timeout: %s, %d attempts, %q", s.Phase, s.Attempts, s.LastErrorMessage)
	}
	if r, err := b.engine.Upkeep(b.ctx, later.Add(2*time.Hour)); err != nil || r.TimedOut != 1 {
		t.Fatalf("second upkeep: %+v, %v", r, err)
	}
	wantPhase(t, b.task(t, id), engine.TaskFailed, map[string]engine.StepPhase{"gate": engine.StepFailed,
		"next": engine.StepSkipped})
	// The signal comes late; the operator retries the step: the kept signal completes it, and the task resumes.
	if err := b.engine.Signal(b.ctx, id, "ok", json.RawMessage(`true`), ""); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.RetryStep(b.ctx, id, "gate"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"gate": engine.StepSucceeded,
		"next": engine.StepEnqueued})

	id2 := b.admit(t, engine.TaskSpec{Queue: "wt", Steps: []engine.StepSpec{{Name: "gate", WaitFor: "never"}}})
	if err := b.engine.ResolveStep(b.ctx, id2, "gate", "not needed"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id2), engine.TaskSucceeded, map[string]engine.StepPhase{"gate": engine.StepResolved})
	id3 := b.admit(t, engine.TaskSpec{Queue: "wt", Steps: []engine.StepSpec{{Name: "gate", WaitFor: "never"}}})
	if err := b.engine.Cancel(b.ctx, id3, "test"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id3), engine.TaskCancelled, map[string]engine.StepPhase{"gate": engine.StepCancelled})
}
