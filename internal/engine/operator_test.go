package engine_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// chainSpec is a -> b -> c, plus d depending on a.
func chainSpec(queue string) engine.TaskSpec {
	return engine.TaskSpec{Queue: queue, Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}},
		{Name: "c", Handler: "h", DependsOn: []string{"b"}},
		{Name: "d", Handler: "h", DependsOn: []string{"a"}},
	}}
}

// runA claims and completes step a, then claims b and d, returned by name.
func (b *testBundle) runA(t *testing.T, queue string) map[string]engine.ClaimedStep {
	t.Helper()
	a := b.claimOne(t, queue, time.Minute, 5*time.Second)
	if err := b.engine.Complete(b.ctx, a.Lease, json.RawMessage(`"a"`)); err != nil {
		t.Fatal(err)
	}
	steps, err := b.engine.Claim(b.ctx, queue, 10, time.Minute, "w1")
	if err != nil || len(steps) != 2 {
		t.Fatalf("claim: %d steps, %v", len(steps), err)
	}
	out := map[string]engine.ClaimedStep{}
	for _, s := range steps {
		out[s.StepName] = s
	}
	return out
}

func TestCancelMidRun(t *testing.T) {
	b := setup(t)
	id := b.admit(t, chainSpec("cancel"))
	running := b.runA(t, "cancel")

	if err := b.engine.Cancel(b.ctx, id, "user deleted the Task"); err != nil {
		t.Fatal(err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskCancelled, map[string]engine.StepPhase{
		"a": engine.StepSucceeded, "b": engine.StepCancelled, "c": engine.StepCancelled, "d": engine.StepCancelled,
	})
	hb, err := b.engine.Heartbeat(b.ctx, running["b"].Lease, time.Minute)
	if err != nil || hb.OK || !hb.Cancelled {
		t.Errorf("heartbeat after cancel = %+v, %v", hb, err)
	}
	if err := b.engine.Complete(b.ctx, running["d"].Lease, nil); !errors.Is(err, engine.ErrStaleLease) {
		t.Errorf("complete after cancel = %v", err)
	}
	if n := b.queueLength(t, "cancel"); n != 0 {
		t.Errorf("%d messages left", n)
	}
	// Idempotent; and finished tasks are left alone.
	if err := b.engine.Cancel(b.ctx, id, ""); err != nil {
		t.Errorf("second cancel: %v", err)
	}
	if err := b.engine.Cancel(b.ctx, 999999, ""); !errors.Is(err, engine.ErrTaskNotFound) {
		t.Errorf("cancel unknown = %v", err)
	}
	if err := b.engine.RetryStep(b.ctx, id, "b"); !errors.Is(err, engine.ErrInvalidTransition) {
		t.Errorf("retry in cancelled task = %v", err)
	}
	if got := b.taskTransitions(t, id); fmtSlice(got) != "[pending>running running>cancelled]" {
		t.Errorf("task transitions = %v", got)
	}
}

func TestCancelPendingTaskDeletesMessages(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "cpend", Steps: []engine.StepSpec{
		{Name: "x", Handler: "h"}, {Name: "y", Handler: "h"}, {Name: "z", Handler: "h", DependsOn: []string{"x"}},
	}})
	if n := b.queueLength(t, "cpend"); n != 2 {
		t.Fatalf("%d messages before cancel", n)
	}
	if err := b.engine.Cancel(b.ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if n := b.queueLength(t, "cpend"); n != 0 {
		t.Errorf("%d messages after cancel", n)
	}
	wantPhase(t, b.task(t, id), engine.TaskCancelled, map[string]engine.StepPhase{"x": engine.StepCancelled})
}

func TestManualRetryResumesFailedTask(t *testing.T) {
	b := setup(t)
	id := b.admit(t, chainSpec("mretry"))
	running := b.runA(t, "mretry")
	if _, err := b.engine.Fail(b.ctx, running["b"].Lease, engine.Failure{Message: "no", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskFailed, map[string]engine.StepPhase{
		"b": engine.StepFailed, "c": engine.StepSkipped, "d": engine.StepCancelled})

	if err := b.engine.RetryStep(b.ctx, id, "a"); !errors.Is(err, engine.ErrInvalidTransition) {
		t.Errorf("retry of a succeeded step = %v", err)
	}
	if err := b.engine.RetryStep(b.ctx, id, "nope"); !errors.Is(err, engine.ErrStepNotFound) {
		t.Errorf("retry of an unknown step = %v", err)
	}
	if err := b.engine.RetryStep(b.ctx, id, "b"); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.RetryStep(b.ctx, id, "b"); err != nil { // idempotent
		t.Fatalf("second retry: %v", err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{
		"a": engine.StepSucceeded, "b": engine.StepEnqueued, "c": engine.StepPending, "d": engine.StepEnqueued})

	b.drain(t, "mretry", id, echo)
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{
		"a": engine.StepSucceeded, "b": engine.StepSucceeded, "c": engine.StepSucceeded, "d": engine.StepSucceeded})
	if st.Step("b").Attempts != 2 {
		t.Errorf("b attempts = %d", st.Step("b").Attempts)
	}
	if got := b.taskTransitions(t, id); fmtSlice(got) != "[pending>running running>failed failed>running running>succeeded]" {
		t.Errorf("task transitions = %v", got)
	}
}

func TestManualRetryGivesAFreshBudget(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "budget", Steps: []engine.StepSpec{{Name: "s", Handler: "h",
		Retry: engine.RetryPolicy{MaxAttempts: 1}}}})
	c := b.claimOne(t, "budget", time.Minute, 5*time.Second)
	if r, err := b.engine.Fail(b.ctx, c.Lease, engine.Failure{Message: "x"}); err != nil || r.Retrying {
		t.Fatalf("fail = %+v, %v", r, err)
	}
	if err := b.engine.RetryStep(b.ctx, id, "s"); err != nil {
		t.Fatal(err)
	}
	c = b.claimOne(t, "budget", time.Minute, 5*time.Second)
	if c.Attempt != 2 {
		t.Errorf("attempt = %d", c.Attempt)
	}
	if err := b.engine.Complete(b.ctx, c.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

func TestResolveStepMidRun(t *testing.T) {
	b := setup(t)
	id := b.admit(t, chainSpec("resolve"))
	running := b.runA(t, "resolve")

	// b is running: resolving it revokes the lease and lets c proceed.
	if err := b.engine.ResolveStep(b.ctx, id, "b", "done by hand"); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.ResolveStep(b.ctx, id, "b", ""); err != nil {
		t.Fatalf("second resolve: %v", err)
	}
	if err := b.engine.Complete(b.ctx, running["b"].Lease, nil); !errors.Is(err, engine.ErrStaleLease) {
		t.Errorf("complete of a resolved step = %v", err)
	}
	c := b.claimOne(t, "resolve", time.Minute, 5*time.Second)
	if c.StepName != "c" {
		t.Fatalf("claimed %s", c.StepName)
	}
	if r, ok := c.DependencyResults["b"]; !ok || string(r) != "null" {
		t.Errorf("dependency results = %v", c.DependencyResults)
	}
	for _, l := range []engine.Lease{c.Lease, running["d"].Lease} {
		if err := b.engine.Complete(b.ctx, l, nil); err != nil {
			t.Fatal(err)
		}
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{"b": engine.StepResolved})
	if err := b.engine.ResolveStep(b.ctx, id, "a", ""); !errors.Is(err, engine.ErrInvalidTransition) {
		t.Errorf("resolve of a succeeded step = %v", err)
	}
}

func TestResolveFailedStepResumesTask(t *testing.T) {
	b := setup(t)
	id := b.admit(t, chainSpec("resfail"))
	running := b.runA(t, "resfail")
	if _, err := b.engine.Fail(b.ctx, running["b"].Lease, engine.Failure{Message: "no", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.ResolveStep(b.ctx, id, "b", "not needed"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{
		"b": engine.StepResolved, "c": engine.StepEnqueued, "d": engine.StepEnqueued})
	b.drain(t, "resfail", id, echo)
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, map[string]engine.StepPhase{"c": engine.StepSucceeded})
}

func TestCompleteStepMidRun(t *testing.T) {
	b := setup(t)
	id := b.admit(t, chainSpec("mcomplete"))
	running := b.runA(t, "mcomplete")
	if err := b.engine.CompleteStep(b.ctx, id, "b", json.RawMessage(`{"by":"hand"}`)); err != nil {
		t.Fatal(err)
	}
	hb, err := b.engine.Heartbeat(b.ctx, running["b"].Lease, time.Minute)
	if err != nil || hb.OK || !hb.Cancelled {
		t.Errorf("heartbeat of a step completed by hand = %+v, %v", hb, err)
	}
	c := b.claimOne(t, "mcomplete", time.Minute, 5*time.Second)
	if string(c.DependencyResults["b"]) != `{"by": "hand"}` {
		t.Errorf("dependency results = %v", c.DependencyResults)
	}
	// Completing a pending step by hand too.
	if err := b.engine.Complete(b.ctx, c.Lease, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.CompleteStep(b.ctx, id, "d", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.Complete(b.ctx, running["d"].Lease, nil); !errors.Is(err, engine.ErrStaleLease) {
		t.Errorf("complete after manual complete = %v", err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, nil)
	if string(st.Step("b").Result) != `{"by": "hand"}` {
		t.Errorf("b result = %s", st.Step("b").Result)
	}
	if n := b.queueLength(t, "mcomplete"); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

func TestOperatorErrorsAreSafeToShow(t *testing.T) {
	b := setup(t)
	id := b.admit(t, chainSpec("errs"))
	for _, err := range []error{
		b.engine.RetryStep(b.ctx, id, "b"),
		b.engine.ResolveStep(b.ctx, id, "zz", ""),
		b.engine.CompleteStep(b.ctx, 123456, "a", nil),
		b.engine.Cancel(b.ctx, 123456, ""),
	} {
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		if strings.Contains(msg, "SELECT") || strings.Contains(msg, "tasker.") || strings.Contains(msg, "SQLSTATE") {
			t.Errorf("error leaks SQL: %q", msg)
		}
		t.Log(msg)
	}
	_, err := b.engine.GetTask(b.ctx, 424242)
	if !errors.Is(err, engine.ErrTaskNotFound) {
		t.Errorf("GetTask unknown = %v", err)
	}
	if _, err := b.engine.Claim(b.ctx, "Bad-Name", 1, time.Second, ""); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Errorf("claim with a bad queue = %v", err)
	}
}

func TestManualRetryWithNewInputs(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "reinput", Steps: []engine.StepSpec{{Name: "s", Handler: "h",
		Inputs: json.RawMessage(`{"card":"bad"}`), Retry: engine.RetryPolicy{MaxAttempts: 1}}}})
	c := b.claimOne(t, "reinput", time.Minute, 5*time.Second)
	if _, err := b.engine.Fail(b.ctx, c.Lease, engine.Failure{Message: "card number is invalid", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.RetryStepWith(b.ctx, id, "s", engine.Retry{Inputs: json.RawMessage(`{not json`)}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("retry with invalid inputs = %v", err)
	}
	if err := b.engine.RetryStepWith(b.ctx, id, "s", engine.Retry{Reason: "fixed the card", Inputs: json.RawMessage(`{"card":"good"}`)}); err != nil {
		t.Fatal(err)
	}
	again := b.claimOne(t, "reinput", time.Minute, 5*time.Second)
	if string(again.Inputs) != `{"card": "good"}` && string(again.Inputs) != `{"card":"good"}` {
		t.Fatalf("claimed inputs %s, want the new ones", again.Inputs)
	}
	if err := b.engine.Complete(b.ctx, again.Lease, nil); err != nil {
		t.Fatal(err)
	}
	if st := b.task(t, id); st.Phase != engine.TaskSucceeded {
		t.Fatalf("phase %s", st.Phase)
	}
	var reason string
	if err := b.pool.QueryRow(b.ctx, `SELECT reason FROM tasker.step_transitions WHERE task_id = $1 AND from_state = 'failed'`, id).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	if reason != "fixed the card with new inputs" {
		t.Fatalf("history reason %q", reason)
	}
}

// An action with an id is carried out once: a second call with the id (its outcome lost by the caller) does
// nothing — the step that failed again after the first retry is not retried a second time — and says so; another
// id, or none, is carried out.
func TestActionWithIDIsCarriedOutOnce(t *testing.T) {
	b := setup(t)
	id := b.admit(t, chainSpec("actonce"))
	running := b.runA(t, "actonce")
	fail := func() {
		t.Helper()
		steps, err := b.engine.Claim(b.ctx, "actonce", 10, time.Minute, "w")
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		for _, s := range steps {
			if s.StepName == "b" {
				if _, err := b.engine.Fail(b.ctx, s.Lease, engine.Failure{Message: "no", Permanent: true}); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
		t.Fatal("b was not claimed after its retry")
	}
	if _, err := b.engine.Fail(b.ctx, running["b"].Lease, engine.Failure{Message: "no", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	ctx := engine.WithAction(b.ctx, "retry-b")
	if err := b.engine.RetryStep(ctx, id, "b"); err != nil {
		t.Fatal(err)
	}
	fail() // b fails again before the caller recorded the outcome
	if err := b.engine.RetryStep(ctx, id, "b"); !errors.Is(err, engine.ErrActionDone) {
		t.Fatalf("the same action again: %v, want ErrActionDone", err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"b": engine.StepFailed})
	if st.Step("b").Attempts != 2 {
		t.Errorf("b ran %d times, want 2 (the action's retry once)", st.Step("b").Attempts)
	}
	if err := b.engine.RetryStep(engine.WithAction(b.ctx, "retry-b-2"), id, "b"); err != nil {
		t.Fatalf("another action: %v", err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"b": engine.StepEnqueued})
}
