package engine_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestCompleteAndClaimTakesTheNextStepOfAChain(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "chain", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}, Inputs: json.RawMessage(`{"x":1}`)},
		{Name: "c", Handler: "h", DependsOn: []string{"b"}},
		{Name: "elsewhere", Handler: "h", Queue: "other", DependsOn: []string{"a"}},
	}})
	a := b.claimOne(t, "chain", 30*time.Second, 5*time.Second)
	out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease, Result: json.RawMessage(`"A"`)}},
		10, 30*time.Second, "w2")
	if err != nil || len(out) != 1 || out[0] != nil {
		t.Fatalf("complete and claim = %v, %v", out, err)
	}
	// b is claimed for the caller; "elsewhere" (another queue, not the caller's to take) is enqueued.
	if len(claimed) != 1 {
		t.Fatalf("claimed %d steps, want 1: %+v", len(claimed), claimed)
	}
	s := claimed[0]
	if s.StepName != "b" || s.Queue != "chain" || s.TaskID != id || s.Attempt != 1 || s.Lease.StepID() != s.StepID ||
		string(s.DependencyResults["a"]) != `"A"` || string(s.Inputs) != `{"x": 1}` ||
		time.Until(s.LeaseExpiresAt) < 20*time.Second {
		t.Fatalf("claimed step: %+v", s)
	}
	// Its message is there (for when the lease expires) but not visible.
	b.claimNone(t, "chain")
	if n := b.queueLength(t, "chain"); n != 1 {
		t.Errorf("chain queue has %d messages, want 1", n)
	}
	other := b.claimOne(t, "other", 30*time.Second, 5*time.Second)
	if other.StepName != "elsewhere" {
		t.Fatalf("other queue: %+v", other)
	}

	// The claimed step is an ordinary claim: it completes (and so may claim its own child, here not).
	if out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: s.Lease}}, 0, time.Second,
		"w2"); err != nil || out[0] != nil || len(claimed) != 0 {
		t.Fatalf("complete b = %v, %v, %v", out, claimed, err)
	}
	c := b.claimOne(t, "chain", 30*time.Second, 5*time.Second)
	if c.StepName != "c" {
		t.Fatalf("claimed %s, want c", c.StepName)
	}
	for _, l := range []engine.Lease{c.Lease, other.Lease} {
		if err := b.engine.Complete(b.ctx, l, nil); err != nil {
			t.Fatal(err)
		}
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
	for _, q := range []string{"chain", "other"} {
		if n := b.queueLength(t, q); n != 0 {
			t.Errorf("queue %s has %d messages left", q, n)
		}
	}

	// The history is the one a claim right after the completion would have written.
	rows, err := b.pool.Query(b.ctx, `
		SELECT x.from_state || '>' || x.to_state || ':' || x.reason || ':' || coalesce(x.worker_id, '')
		FROM tasker.step_transitions AS x JOIN tasker.steps AS s ON s.id = x.step_id
		WHERE x.task_id = $1 AND s.name = 'b' ORDER BY x.id`, id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := "[pending>enqueued:dependencies finished: enqueued>running:claimed:w2 running>succeeded:completed:w2]"
	if fmtSlice(got) != want {
		t.Errorf("transitions of b = %s\nwant %s", fmtSlice(got), want)
	}
}

func TestCompleteAndClaimTakesAtMostMax(t *testing.T) {
	b := setup(t)
	steps := []engine.StepSpec{{Name: "root", Handler: "h"}}
	for _, n := range []string{"c1", "c2", "c3", "c4", "c5"} {
		steps = append(steps, engine.StepSpec{Name: n, Handler: "h", DependsOn: []string{"root"}})
	}
	id := b.admit(t, engine.TaskSpec{Queue: "fan", Steps: steps})
	root := b.claimOne(t, "fan", 30*time.Second, 5*time.Second)
	_, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: root.Lease}}, 2, 30*time.Second, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 2 || claimed[0].StepName != "c1" || claimed[1].StepName != "c2" {
		t.Fatalf("claimed %+v, want c1 and c2", claimed)
	}
	rest, err := b.engine.Claim(b.ctx, "fan", 10, 30*time.Second, "w1")
	if err != nil || len(rest) != 3 {
		t.Fatalf("claim of the rest = %d steps, %v", len(rest), err)
	}
	comps := make([]engine.Completion, 0, 5)
	for _, s := range append(claimed, rest...) {
		comps = append(comps, engine.Completion{Lease: s.Lease})
	}
	if _, more, err := b.engine.CompleteAndClaim(b.ctx, comps, 10, 30*time.Second, "w1"); err != nil || len(more) != 0 {
		t.Fatalf("complete the children = %v, %v", more, err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

func TestCompleteAndClaimLeaseExpires(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "expiry", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}},
	}})
	a := b.claimOne(t, "expiry", 30*time.Second, 5*time.Second)
	_, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease}}, 1, time.Second, "w1")
	if err != nil || len(claimed) != 1 {
		t.Fatalf("complete and claim = %+v, %v", claimed, err)
	}
	// The worker that took b dies: its message becomes visible when the lease expires, and b is claimed again.
	again := b.claimOne(t, "expiry", 30*time.Second, 5*time.Second)
	if again.StepName != "b" || again.Attempt != 2 {
		t.Fatalf("re-claim: %+v", again)
	}
	if err := b.engine.Complete(b.ctx, claimed[0].Lease, nil); !errors.Is(err, engine.ErrStaleLease) {
		t.Fatalf("complete with the expired lease = %v", err)
	}
	if err := b.engine.Complete(b.ctx, again.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
	if n := b.queueLength(t, "expiry"); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

func TestCompleteAndClaimLeavesPrioritizedQueuesToClaims(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "prio", Priority: 5, Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}},
	}})
	a := b.claimOne(t, "prio", 30*time.Second, 5*time.Second)
	_, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease}}, 10, 30*time.Second, "w1")
	if err != nil || len(claimed) != 0 {
		t.Fatalf("complete and claim on a prioritized queue = %+v, %v", claimed, err)
	}
	next := b.claimOne(t, "prio", 30*time.Second, 5*time.Second)
	if next.StepName != "b" {
		t.Fatalf("claimed %s", next.StepName)
	}
	if err := b.engine.Complete(b.ctx, next.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

func TestCompleteAndClaimStaleLease(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "stale", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}},
	}})
	a := b.claimOne(t, "stale", 30*time.Second, 5*time.Second)
	if err := b.engine.Complete(b.ctx, a.Lease, nil); err != nil {
		t.Fatal(err)
	}
	out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease}}, 10, 30*time.Second, "w1")
	if err != nil || len(out) != 1 || !errors.Is(out[0], engine.ErrStaleLease) || len(claimed) != 0 {
		t.Fatalf("second report = %v, %+v, %v", out, claimed, err)
	}
	if _, _, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease}}, 1001, time.Second, ""); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("max 1001 = %v", err)
	}
}

// A worker upgraded before the operator has migrated its database reports its successes without claiming.
func TestCompleteAndClaimOnAnOlderSchema(t *testing.T) {
	b := setup(t)
	if _, err := b.pool.Exec(b.ctx, `DROP FUNCTION tasker.complete_and_claim`); err != nil {
		t.Fatal(err)
	}
	id := b.admit(t, engine.TaskSpec{Queue: "older", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}},
	}})
	for _, name := range []string{"a", "b"} {
		s := b.claimOne(t, "older", 30*time.Second, 5*time.Second)
		out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: s.Lease}}, 10, 30*time.Second, "w1")
		if s.StepName != name || err != nil || len(out) != 1 || out[0] != nil || len(claimed) != 0 {
			t.Fatalf("step %s: complete and claim = %v, %+v, %v", s.StepName, out, claimed, err)
		}
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

// A claim does not wait for a task row that someone else holds to start the task; if the task is still pending
// when one of its steps completes (the claim that would have started it rolled back), the completion starts it.
func TestTaskStartSkipsALockedTaskRow(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "start", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h"},
	}})
	// Another transaction holds the task row (as a concurrent claim starting the task would).
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	if _, err := tx.Exec(b.ctx, `SELECT 1 FROM tasker.tasks WHERE id = $1 FOR NO KEY UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	conn, err := b.pool.Acquire(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// Waiting for the row would fail the claim instead of hanging the test.
	if _, err := conn.Exec(b.ctx, `SET lock_timeout = '2s'`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(b.ctx, `SELECT c.lease::text, c.step_name FROM tasker.claim('start', 10, 30, 'w1') AS c`)
	if err != nil {
		t.Fatal(err)
	}
	type claimed struct{ Lease, Name string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[claimed])
	if _, rerr := conn.Exec(b.ctx, `RESET lock_timeout`); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil || len(got) != 2 {
		t.Fatalf("claim while the task row is held = %v, %v", got, err)
	}
	if err := tx.Rollback(b.ctx); err != nil { // the other "claim" rolls back: nobody started the task
		t.Fatal(err)
	}
	if st := b.task(t, id); st.Phase != engine.TaskPending {
		t.Fatalf("task %s, want still pending", st.Phase)
	}
	for i, c := range got {
		l, err := engine.ParseLease(c.Lease)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.engine.Complete(b.ctx, l, nil); err != nil {
			t.Fatal(err)
		}
		if want := []engine.TaskPhase{engine.TaskRunning, engine.TaskSucceeded}[i]; b.task(t, id).Phase != want {
			t.Fatalf("after completing %s: task %s, want %s", c.Name, b.task(t, id).Phase, want)
		}
	}
	if got, want := fmtSlice(b.taskTransitions(t, id)), "[pending>running running>succeeded]"; got != want {
		t.Errorf("task transitions %s, want %s", got, want)
	}
}
