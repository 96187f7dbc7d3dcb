package engine_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// claimOne claims until it gets exactly one step (waiting up to timeout), failing the test otherwise.
func (b *testBundle) claimOne(t testing.TB, queue string, vt, timeout time.Duration) engine.ClaimedStep {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		steps, err := b.engine.Claim(b.ctx, queue, 10, vt, "w1")
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		switch {
		case len(steps) == 1:
			return steps[0]
		case len(steps) > 1:
			t.Fatalf("claimed %d steps, want 1", len(steps))
		case time.Now().After(deadline):
			t.Fatalf("nothing to claim in %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *testBundle) claimNone(t testing.TB, queue string) {
	t.Helper()
	steps, err := b.engine.Claim(b.ctx, queue, 10, 30*time.Second, "w1")
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if len(steps) != 0 {
		t.Fatalf("claimed %d steps (%s ...), want none", len(steps), steps[0].StepName)
	}
}

func TestRetryTwiceThenSucceed(t *testing.T) {
	b := setup(t)
	retry := engine.RetryPolicy{MaxAttempts: 3, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second,
		Jitter: engine.NoJitter}
	id := b.admit(t, engine.TaskSpec{Queue: "retry", Steps: []engine.StepSpec{
		{Name: "flaky", Handler: "h", Retry: retry},
		{Name: "after", Handler: "h", DependsOn: []string{"flaky"}},
	}})

	calls := 0
	b.drain(t, "retry", id, func(s engine.ClaimedStep) (json.RawMessage, error) {
		if s.StepName == "flaky" {
			calls++
			if s.Attempt != calls {
				t.Errorf("attempt = %d on call %d", s.Attempt, calls)
			}
			if calls <= 2 {
				return nil, errors.New("transient")
			}
		}
		return json.RawMessage(`true`), nil
	})

	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{"flaky": engine.StepSucceeded, "after": engine.StepSucceeded})
	if a := st.Step("flaky").Attempts; a != 3 {
		t.Errorf("attempts = %d, want 3", a)
	}
	if msg := st.Step("flaky").LastErrorMessage; msg != "transient" {
		t.Errorf("last error = %q", msg)
	}

	// Backoff honoured: retrying -> running no earlier than 100 ms, then 200 ms, after running -> retrying.
	var retryAt []time.Time
	var delays []time.Duration
	for _, tr := range b.stepTransitions(t, id) {
		if tr.Step != "flaky" {
			continue
		}
		switch {
		case tr.From == "running" && tr.To == "retrying":
			retryAt = append(retryAt, tr.At)
		case tr.From == "retrying" && tr.To == "running":
			delays = append(delays, tr.At.Sub(retryAt[len(retryAt)-1]))
		}
	}
	if len(delays) != 2 {
		t.Fatalf("%d retries recorded, want 2", len(delays))
	}
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		if delays[i] < want || delays[i] > want+2*time.Second {
			t.Errorf("retry %d after %s, want >= %s", i+1, delays[i], want)
		}
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "jitter", Steps: []engine.StepSpec{{Name: "s", Handler: "h",
		Retry: engine.RetryPolicy{MaxAttempts: 5, BackoffBase: 10 * time.Second, BackoffMax: 15 * time.Second,
			Jitter: 0.5}}}})
	_ = id
	c := b.claimOne(t, "jitter", 30*time.Second, 5*time.Second)
	before := time.Now()
	r, err := b.engine.Fail(b.ctx, c.Lease, engine.Failure{Message: "x"})
	if err != nil || !r.Retrying {
		t.Fatalf("fail = %+v, %v", r, err)
	}
	// attempt 1: 10 s +/- 50 %, capped at 15 s.
	if d := r.NextAttemptAt.Sub(before); d < 4*time.Second || d > 15*time.Second+time.Second {
		t.Errorf("first retry in %s", d)
	}
}

func TestRetryAfterWins(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "ra", Steps: []engine.StepSpec{{Name: "s", Handler: "h",
		Retry: engine.RetryPolicy{MaxAttempts: 3, BackoffBase: time.Hour, BackoffMax: time.Hour}}}})
	c := b.claimOne(t, "ra", 30*time.Second, 5*time.Second)
	start := time.Now()
	r, err := b.engine.Fail(b.ctx, c.Lease, engine.Failure{Message: "rate limited", RetryAfter: 150 * time.Millisecond})
	if err != nil || !r.Retrying {
		t.Fatalf("fail = %+v, %v", r, err)
	}
	if d := r.NextAttemptAt.Sub(start); d > time.Second {
		t.Errorf("next attempt in %s, want about 150ms", d)
	}
	b.claimNone(t, "ra") // not yet visible
	c2 := b.claimOne(t, "ra", 30*time.Second, 5*time.Second)
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("claimed again after %s", el)
	}
	if c2.Attempt != 2 || c2.Lease == c.Lease {
		t.Errorf("second claim: attempt %d, same lease %v", c2.Attempt, c2.Lease == c.Lease)
	}
}

func TestPermanentFailureStopsBranchesBelow(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "perm", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}},
		{Name: "c", Handler: "h", DependsOn: []string{"b"}},
		{Name: "d", Handler: "h", DependsOn: []string{"a"}},
		{Name: "e", Handler: "h", DependsOn: []string{"c", "d"}},
		{Name: "f", Handler: "h", DependsOn: []string{"d"}},
	}})
	a := b.claimOne(t, "perm", 30*time.Second, 5*time.Second)
	if err := b.engine.Complete(b.ctx, a.Lease, nil); err != nil {
		t.Fatal(err)
	}
	steps, err := b.engine.Claim(b.ctx, "perm", 10, 30*time.Second, "w1")
	if err != nil || len(steps) != 2 {
		t.Fatalf("claim = %d steps, %v", len(steps), err)
	}
	byName := map[string]engine.ClaimedStep{}
	for _, s := range steps {
		byName[s.StepName] = s
	}
	r, err := b.engine.Fail(b.ctx, byName["b"].Lease, engine.Failure{Message: "bad input", Permanent: true,
		Details: json.RawMessage(`{"field":"x"}`)})
	if err != nil || r.Retrying {
		t.Fatalf("fail = %+v, %v", r, err)
	}

	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{
		"a": engine.StepSucceeded, "b": engine.StepFailed, "c": engine.StepSkipped, "d": engine.StepCancelled,
		"e": engine.StepSkipped, "f": engine.StepCancelled,
	})
	if st.Step("b").LastErrorMessage != "bad input" || st.CompletedAt == nil {
		t.Errorf("b: %+v", st.Step("b"))
	}
	// d was running: its lease is revoked.
	hb, err := b.engine.Heartbeat(b.ctx, byName["d"].Lease, time.Minute)
	if err != nil || hb.OK || !hb.Cancelled {
		t.Errorf("heartbeat of cancelled step = %+v, %v", hb, err)
	}
	if err := b.engine.Complete(b.ctx, byName["d"].Lease, nil); !errors.Is(err, engine.ErrStaleLease) {
		t.Errorf("late complete = %v, want ErrStaleLease", err)
	}
	b.claimNone(t, "perm")
	if n := b.queueLength(t, "perm"); n != 0 {
		t.Errorf("%d messages left", n)
	}
	if got := b.taskTransitions(t, id); len(got) != 2 || got[1] != "running>failed" {
		t.Errorf("task transitions = %v", got)
	}
}

func TestAttemptsExhausted(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "exh", Steps: []engine.StepSpec{{Name: "s", Handler: "h",
		Retry: engine.RetryPolicy{MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, Jitter: engine.NoJitter}}}})
	for i := 1; i <= 2; i++ {
		c := b.claimOne(t, "exh", 30*time.Second, 5*time.Second)
		r, err := b.engine.Fail(b.ctx, c.Lease, engine.Failure{Message: "boom"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Retrying != (i == 1) {
			t.Fatalf("attempt %d: retrying = %v", i, r.Retrying)
		}
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"s": engine.StepFailed})
	trs := b.stepTransitions(t, id)
	if last := trs[len(trs)-1]; last.To != "failed" || last.Reason != "failed (attempts exhausted)" || last.Attempt != 2 {
		t.Errorf("last transition = %+v", last)
	}
}

// retry_after_seconds must be finite: NaN compares greater than every number in PostgreSQL and used to become a
// one-year delay (issue 13).
func TestFailRefusesNonFiniteRetryAfter(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "nan", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
	c := b.claimOne(t, "nan", time.Minute, 0)
	for _, v := range []string{"NaN", "Infinity", "-Infinity"} {
		_, err := b.pool.Exec(b.ctx, `SELECT * FROM tasker.fail($1::uuid, '{"message":"x"}'::jsonb, true, $2::double precision)`,
			c.Lease.String(), v)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22023" || !strings.Contains(pgErr.Message, "retry_after_seconds") {
			t.Errorf("fail with retry_after_seconds %s = %v, want 22023 naming retry_after_seconds", v, err)
		}
	}
	if st := b.task(t, id); st.Step("s").Phase != engine.StepRunning {
		t.Errorf("step %s after refused failures, want running", st.Step("s").Phase)
	}
}

// A message names a step only on that step's queue (message ids are per queue): a message of another queue that
// happens to carry the id of a step is dropped, not claimed (issue 13).
func TestClaimIgnoresAMessageForAStepOfAnotherQueue(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "qone", Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
	b.admit(t, engine.TaskSpec{Queue: "qtwo", Steps: []engine.StepSpec{{Name: "t", Handler: "h"}}})
	// qtwo's only message now names qone's step, whose msg_id in qone happens to be the same (both are 1).
	if _, err := b.pool.Exec(b.ctx, `UPDATE pgmq.q_qtwo SET message = jsonb_set(message, '{step_id}',
		to_jsonb((SELECT id FROM tasker.steps WHERE queue = 'qone')))`); err != nil {
		t.Fatal(err)
	}
	var same bool
	if err := b.pool.QueryRow(b.ctx, `SELECT (SELECT msg_id FROM tasker.steps WHERE queue = 'qone') = (SELECT msg_id FROM pgmq.q_qtwo)`).
		Scan(&same); err != nil || !same {
		t.Fatalf("the test needs equal message ids: %v %v", same, err)
	}
	b.claimNone(t, "qtwo")
	if got := b.claimOne(t, "qone", time.Minute, 0); got.StepName != "s" {
		t.Fatalf("claimed %+v from qone", got)
	}
}
