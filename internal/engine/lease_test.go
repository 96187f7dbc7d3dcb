package engine_test

import (
	"encoding/json"
	"errors"
	"strings"
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

// expireLease makes the lease of a running step look expired now, as if its visibility timeout had passed: the
// step's lease and its message's visibility end a moment ago.
func (b *testBundle) expireLease(t testing.TB, queue string, stepID int64) {
	t.Helper()
	if _, err := b.pool.Exec(b.ctx, `WITH s AS (
			UPDATE tasker.steps SET lease_expires_at = clock_timestamp() - interval '1 millisecond'
			WHERE id = $1 AND state = 'running' RETURNING msg_id)
		UPDATE pgmq.q_`+queue+` AS q SET vt = clock_timestamp() - interval '1 millisecond' FROM s WHERE q.msg_id = s.msg_id`,
		stepID); err != nil {
		t.Fatal(err)
	}
}

// An expired lease is not extended, even before anyone claims the step again: otherwise a claim that already read
// the step as expired takes it over while the old holder was told it still holds it (issue 13).
func TestHeartbeatDoesNotExtendAnExpiredLease(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "hbexp", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
	first := b.claimOne(t, "hbexp", time.Minute, 0)
	b.expireLease(t, "hbexp", first.StepID)
	hb, err := b.engine.Heartbeat(b.ctx, first.Lease, 10*time.Minute)
	if err != nil || hb.OK || hb.Cancelled {
		t.Fatalf("heartbeat of an expired lease = %+v, %v", hb, err)
	}
	second := b.claimOne(t, "hbexp", time.Minute, 0)
	if second.StepID != first.StepID || second.Attempt != 2 {
		t.Fatalf("re-claim: %+v", second)
	}
}

// A claim that read a running step as expired does not take it over when a heartbeat extended the lease before it
// expired and committed after the claim read the step: the claim waits for the step's row lock and re-checks the
// expiry (issue 13).
func TestReclaimSkipsALeaseExtendedMeanwhile(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "hbrace", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
	c := b.claimOne(t, "hbrace", time.Minute, 0)
	// The lease ends in a moment; the heartbeat below extends it before that, and commits only after it ended.
	if _, err := b.pool.Exec(b.ctx, `UPDATE tasker.steps SET lease_expires_at = clock_timestamp() + interval '200 milliseconds'
		WHERE id = $1`, c.StepID); err != nil {
		t.Fatal(err)
	}

	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	var ok bool
	if err := tx.QueryRow(b.ctx, `SELECT ok FROM tasker.heartbeat($1, 600)`, c.Lease.String()).Scan(&ok); err != nil || !ok {
		t.Fatalf("heartbeat = %v, %v", ok, err)
	}
	for { // the committed lease has expired: what a claim reads now
		var expired bool
		if err := b.pool.QueryRow(b.ctx, `SELECT lease_expires_at <= clock_timestamp() FROM tasker.steps WHERE id = $1`,
			c.StepID).Scan(&expired); err != nil {
			t.Fatal(err)
		}
		if expired {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The claim's step update, for the step it read as running under an expired lease; it waits for the heartbeat.
	type result struct {
		ids []int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		var ids []int64
		err := b.pool.QueryRow(b.ctx, `SELECT tasker._start_attempts(ARRAY[$1::bigint],
			ARRAY[clock_timestamp() + interval '1 minute'], ARRAY['running'], 'second-worker')`, c.StepID).Scan(&ids)
		done <- result{ids, err}
	}()
	b.waitForLockWait(t, "tasker._start_attempts")
	if err := tx.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || len(res.ids) != 0 {
		t.Fatalf("started %v, %v: the extended lease was taken over", res.ids, res.err)
	}
	if hb, err := b.engine.Heartbeat(b.ctx, c.Lease, time.Minute); err != nil || !hb.OK {
		t.Fatalf("the holder lost its lease: %+v, %v", hb, err)
	}
}

// A step given back over and over (its workers always stopped before it finishes) does not cycle for ever: past
// tasker.max_releases() a release counts as a failed attempt (issue 13).
func TestReleasesAreBounded(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "rel", Steps: []engine.StepSpec{{Name: "s", Handler: "h",
		Retry: engine.RetryPolicy{MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, Jitter: engine.NoJitter}}}})
	c := b.claimOne(t, "rel", time.Minute, 0)
	if err := b.engine.Release(b.ctx, c.Lease); err != nil {
		t.Fatalf("a first release: %v", err)
	}
	if _, err := b.pool.Exec(b.ctx, `UPDATE tasker.steps SET releases = tasker.max_releases() WHERE task_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	c = b.claimOne(t, "rel", time.Minute, 0)
	if c.Attempt != 1 {
		t.Fatalf("attempt %d after a free release, want 1", c.Attempt)
	}
	if err := b.engine.Release(b.ctx, c.Lease); !errors.Is(err, engine.ErrReleaseCounted) {
		t.Fatalf("release past the bound: %v, want ErrReleaseCounted", err)
	}
	st := b.task(t, id)
	if s := st.Step("s"); s.Phase != engine.StepRetrying || !strings.Contains(s.LastErrorMessage, "released 100 times") {
		t.Fatalf("step after the release past the bound: %s %q", s.Phase, s.LastErrorMessage)
	}
	c = b.claimOne(t, "rel", time.Minute, 5*time.Second)
	if err := b.engine.Release(b.ctx, c.Lease); !errors.Is(err, engine.ErrReleaseCounted) { // the last attempt: the step and its task fail
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskFailed, map[string]engine.StepPhase{"s": engine.StepFailed})
}
