package engine_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestExpiredLeaseIsReclaimedAndLateCompleteRejected(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "lease", Steps: []engine.StepSpec{
		{Name: "s", Handler: "h"},
		{Name: "t", Handler: "h", DependsOn: []string{"s"}},
	}})
	first := b.claimOne(t, "lease", time.Second, 5*time.Second)
	if first.Attempt != 1 || first.Lease.StepID() != first.StepID {
		t.Fatalf("first claim: %+v", first)
	}
	b.claimNone(t, "lease") // invisible while the lease runs

	// The holder never reports: after the visibility timeout the step is claimed again.
	second := b.claimOne(t, "lease", 30*time.Second, 5*time.Second)
	if second.StepID != first.StepID || second.Attempt != 2 || second.Lease == first.Lease {
		t.Fatalf("second claim: %+v", second)
	}

	// The first holder's late reports change nothing.
	before := b.task(t, id)
	if err := b.engine.Complete(b.ctx, first.Lease, json.RawMessage(`"late"`)); !errors.Is(err, engine.ErrStaleLease) {
		t.Fatalf("late complete = %v", err)
	}
	if _, err := b.engine.Fail(b.ctx, first.Lease, engine.Failure{Message: "late"}); !errors.Is(err, engine.ErrStaleLease) {
		t.Fatalf("late fail = %v", err)
	}
	if err := b.engine.Release(b.ctx, first.Lease); !errors.Is(err, engine.ErrStaleLease) {
		t.Fatalf("late release = %v", err)
	}
	hb, err := b.engine.Heartbeat(b.ctx, first.Lease, time.Minute)
	if err != nil || hb.OK || hb.Cancelled {
		t.Fatalf("late heartbeat = %+v, %v", hb, err)
	}
	after := b.task(t, id)
	s0, s1 := before.Step("s"), after.Step("s")
	if s1.Phase != engine.StepRunning || s1.Attempts != 2 || s1.Result != nil || !s1.UpdatedAt.Equal(s0.UpdatedAt) {
		t.Fatalf("step changed by stale calls: before %+v after %+v", s0, s1)
	}

	if err := b.engine.Complete(b.ctx, second.Lease, json.RawMessage(`"ok"`)); err != nil {
		t.Fatal(err)
	}
	third := b.claimOne(t, "lease", 30*time.Second, 5*time.Second)
	if string(third.DependencyResults["s"]) != `"ok"` {
		t.Errorf("dependency result = %s", third.DependencyResults["s"])
	}
	var reasons []string
	for _, tr := range b.stepTransitions(t, id) {
		if tr.Step == "s" {
			reasons = append(reasons, tr.From+">"+tr.To+":"+tr.Reason)
		}
	}
	want := "[pending>enqueued:admitted enqueued>running:claimed running>running:lease expired running>succeeded:completed]"
	if got := fmtSlice(reasons); got != want {
		t.Errorf("transitions = %s\nwant %s", got, want)
	}
}

func fmtSlice(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

func TestHeartbeatKeepsTheLease(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "hb", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
	c := b.claimOne(t, "hb", time.Second, 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	hb, err := b.engine.Heartbeat(b.ctx, c.Lease, 3*time.Second)
	if err != nil || !hb.OK || hb.Cancelled || !hb.LeaseExpiresAt.After(c.LeaseExpiresAt) {
		t.Fatalf("heartbeat = %+v, %v", hb, err)
	}
	time.Sleep(900 * time.Millisecond) // past the original visibility timeout
	b.claimNone(t, "hb")
	if err := b.engine.Complete(b.ctx, c.Lease, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseExpiredOnLastAttemptFailsTheStep(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "last", Steps: []engine.StepSpec{
		{Name: "s", Handler: "h", Retry: engine.RetryPolicy{MaxAttempts: 1}},
		{Name: "t", Handler: "h", DependsOn: []string{"s"}},
	}})
	b.claimOne(t, "last", time.Second, 5*time.Second)
	time.Sleep(1100 * time.Millisecond)
	b.claimNone(t, "last") // the message reappears, but the step has no attempt left
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"s": engine.StepFailed, "t": engine.StepSkipped})
	if n := b.queueLength(t, "last"); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

func TestReleaseGivesTheStepBack(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "rel", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
	c := b.claimOne(t, "rel", time.Minute, 5*time.Second)
	if err := b.engine.Release(b.ctx, c.Lease); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.Release(b.ctx, c.Lease); !errors.Is(err, engine.ErrStaleLease) {
		t.Fatalf("second release = %v", err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"s": engine.StepEnqueued})
	c2 := b.claimOne(t, "rel", time.Minute, time.Second) // visible at once
	if c2.Attempt != 1 {
		t.Errorf("attempt after release = %d, want 1 (a release does not count)", c2.Attempt)
	}
	if err := b.engine.Complete(b.ctx, c2.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

func TestUnknownLeaseChangesNothing(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "unk", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
	c := b.claimOne(t, "unk", time.Minute, 5*time.Second)
	forged := c.Lease
	forged[15] ^= 0xff // same step, wrong token
	for _, l := range []engine.Lease{forged, {}, {1, 2, 3}} {
		if err := b.engine.Complete(b.ctx, l, nil); !errors.Is(err, engine.ErrStaleLease) {
			t.Errorf("complete(%v) = %v", l, err)
		}
		if _, err := b.engine.Fail(b.ctx, l, engine.Failure{Message: "x", Permanent: true}); !errors.Is(err, engine.ErrStaleLease) {
			t.Errorf("fail(%v) = %v", l, err)
		}
		if hb, err := b.engine.Heartbeat(b.ctx, l, time.Minute); err != nil || hb.OK || hb.Cancelled {
			t.Errorf("heartbeat(%v) = %+v, %v", l, hb, err)
		}
	}
	errs, err := b.engine.CompleteMany(b.ctx, []engine.Completion{{Lease: forged}, {Lease: c.Lease}})
	if err != nil || !errors.Is(errs[0], engine.ErrStaleLease) || errs[1] != nil {
		t.Fatalf("complete many = %v, %v", errs, err)
	}
	l, err := engine.ParseLease(c.Lease.String())
	if err != nil || l != c.Lease {
		t.Errorf("ParseLease(String()) = %v, %v", l, err)
	}
}

// Two workers reporting on the same lease at the same time: exactly one wins.
func TestConcurrentReportsOnOneLease(t *testing.T) {
	b := setup(t)
	for round := range 20 {
		id := b.admit(t, engine.TaskSpec{Queue: "dup", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
		c := b.claimOne(t, "dup", time.Minute, 5*time.Second)
		results := make(chan error, 2)
		go func() { results <- b.engine.Complete(b.ctx, c.Lease, json.RawMessage(`1`)) }()
		go func() {
			_, err := b.engine.Fail(b.ctx, c.Lease, engine.Failure{Message: "x", Permanent: true})
			results <- err
		}()
		e1, e2 := <-results, <-results
		wins := 0
		for _, err := range []error{e1, e2} {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, engine.ErrStaleLease):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners", round, wins)
		}
		var n int
		if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tasker.step_transitions WHERE task_id = $1
			AND from_state = 'running'`, id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("round %d: %d transitions out of running, %v", round, n, err)
		}
	}
}

// One CompleteMany over steps of two queues and two tasks, with a stale lease in the middle.
func TestCompleteManyAcrossQueues(t *testing.T) {
	b := setup(t)
	t1 := b.admit(t, engine.TaskSpec{Queue: "qa", Steps: []engine.StepSpec{
		{Name: "x", Handler: "h"}, {Name: "y", Handler: "h", Queue: "qb", DependsOn: []string{"x"}}}})
	t2 := b.admit(t, engine.TaskSpec{Queue: "qb", Steps: []engine.StepSpec{{Name: "z", Handler: "h"}}})
	x := b.claimOne(t, "qa", time.Minute, 5*time.Second)
	z := b.claimOne(t, "qb", time.Minute, 5*time.Second)
	errs, err := b.engine.CompleteMany(b.ctx, []engine.Completion{
		{Lease: x.Lease, Result: json.RawMessage(`"x"`)},
		{Lease: engine.Lease{9}},
		{Lease: z.Lease, Result: json.RawMessage(`"z"`)},
	})
	if err != nil || errs[0] != nil || !errors.Is(errs[1], engine.ErrStaleLease) || errs[2] != nil {
		t.Fatalf("CompleteMany = %v, %v", errs, err)
	}
	wantPhase(t, b.task(t, t2), engine.TaskSucceeded, nil)
	y := b.claimOne(t, "qb", time.Minute, 5*time.Second)
	if y.StepName != "y" || string(y.DependencyResults["x"]) != `"x"` {
		t.Fatalf("claimed %+v", y)
	}
	if err := b.engine.Complete(b.ctx, y.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, t1), engine.TaskSucceeded, nil)
	if b.queueLength(t, "qa")+b.queueLength(t, "qb") != 0 {
		t.Error("messages left")
	}
}

func TestCompleteManyWithDuplicateLeases(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "dupl", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"}, {Name: "b", Handler: "h", DependsOn: []string{"a"}}}})
	a := b.claimOne(t, "dupl", time.Minute, 5*time.Second)
	errs, err := b.engine.CompleteMany(b.ctx, []engine.Completion{{Lease: a.Lease, Result: json.RawMessage(`1`)},
		{Lease: a.Lease, Result: json.RawMessage(`2`)}})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("CompleteMany = %v, %v", errs, err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskRunning, map[string]engine.StepPhase{"a": engine.StepSucceeded, "b": engine.StepEnqueued})
	if n := b.queueLength(t, "dupl"); n != 1 {
		t.Errorf("%d messages, want 1 (b's)", n)
	}
	var succeeded int
	for _, tr := range b.stepTransitions(t, id) {
		if tr.To == "succeeded" {
			succeeded++
		}
	}
	if succeeded != 1 {
		t.Errorf("%d succeeded transitions", succeeded)
	}
}
