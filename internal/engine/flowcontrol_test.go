package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// admitGrouped admits a one-step task on queue in concurrency group c with a context.
func (b *testBundle) admitGrouped(t testing.TB, queue string, c engine.Concurrency, context string) int64 {
	t.Helper()
	return b.admit(t, engine.TaskSpec{Namespace: "ns", Queue: queue, Context: json.RawMessage(context),
		Concurrency: &c, Steps: []engine.StepSpec{{Name: "only", Handler: "h"}}})
}

// claimAll claims what queue gives now.
func (b *testBundle) claimAll(t testing.TB, queue string) []engine.ClaimedStep {
	t.Helper()
	steps, err := b.engine.Claim(b.ctx, queue, 100, time.Minute, "w")
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

func taskIDs(steps []engine.ClaimedStep) []int64 {
	out := make([]int64, len(steps))
	for i, s := range steps {
		out[i] = s.TaskID
	}
	return out
}

// A group with maxRunning 2: two tasks run, the others wait (status says so and how many are ahead) with no
// message, and each finish — success, failure, cancellation — starts the next waiter in admission order.
func TestConcurrencyGroupQueues(t *testing.T) {
	b := setup(t)
	c := engine.Concurrency{Group: "deploy", MaxRunning: 2}
	var ids []int64
	for range 5 {
		ids = append(ids, b.admitGrouped(t, "cg", c, `{}`))
	}
	st := b.task(t, ids[3])
	if st.Concurrency == nil || !st.Concurrency.Waiting || st.Concurrency.Ahead != 1 || st.Concurrency.Group != "ns/deploy" ||
		st.Concurrency.MaxRunning != 2 || st.Concurrency.Running != 2 {
		t.Fatalf("task 4's concurrency = %+v, want waiting, 1 ahead in ns/deploy, 2 of 2 running", st.Concurrency)
	}
	wantPhase(t, st, engine.TaskPending, map[string]engine.StepPhase{"only": engine.StepPending})
	if st := b.task(t, ids[0]); st.Concurrency == nil || st.Concurrency.Waiting {
		t.Fatalf("task 1's concurrency = %+v, want holding a slot", st.Concurrency)
	}
	got := b.claimAll(t, "cg")
	if fmt.Sprint(taskIDs(got)) != fmt.Sprint(ids[:2]) {
		t.Fatalf("claimed tasks %v, want %v", taskIDs(got), ids[:2])
	}
	if n := b.queueLength(t, "cg"); n != 2 {
		t.Fatalf("%d messages, want 2 (waiting tasks have none)", n)
	}
	// A success starts the third.
	if err := b.engine.Complete(b.ctx, got[0].Lease, nil); err != nil {
		t.Fatal(err)
	}
	third := b.claimAll(t, "cg")
	if fmt.Sprint(taskIDs(third)) != fmt.Sprint(ids[2:3]) {
		t.Fatalf("after a success: claimed %v, want %v", taskIDs(third), ids[2:3])
	}
	// A permanent failure starts the fourth.
	if _, err := b.engine.Fail(b.ctx, got[1].Lease, engine.Failure{Message: "no", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	fourth := b.claimAll(t, "cg")
	if fmt.Sprint(taskIDs(fourth)) != fmt.Sprint(ids[3:4]) {
		t.Fatalf("after a failure: claimed %v, want %v", taskIDs(fourth), ids[3:4])
	}
	// A cancellation starts the fifth; the history says why its step was enqueued only now.
	if err := b.engine.Cancel(b.ctx, ids[2], "enough"); err != nil {
		t.Fatal(err)
	}
	fifth := b.claimAll(t, "cg")
	if fmt.Sprint(taskIDs(fifth)) != fmt.Sprint(ids[4:5]) {
		t.Fatalf("after a cancellation: claimed %v, want %v", taskIDs(fifth), ids[4:5])
	}
	if tr := b.stepTransitions(t, ids[4]); len(tr) == 0 || tr[0].Reason != "concurrency slot free" {
		t.Fatalf("task 5's history = %+v, want its step enqueued for a free slot", tr)
	}
	for _, s := range append(fourth, fifth...) {
		if err := b.engine.Complete(b.ctx, s.Lease, nil); err != nil {
			t.Fatal(err)
		}
	}
	var members int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tasker.concurrency_members`).Scan(&members); err != nil {
		t.Fatal(err)
	}
	if members != 0 {
		t.Fatalf("after all finished: %d members, want none", members)
	}
}

// A waiting task that is cancelled leaves its group without taking a slot; one whose first steps are all omitted
// finishes as it is released and hands the slot straight on.
func TestConcurrencyWaiterLeavesAndInstantFinish(t *testing.T) {
	b := setup(t)
	c := engine.Concurrency{Group: "g"}
	first := b.admitGrouped(t, "cw", c, `{}`)
	waiter := b.admitGrouped(t, "cw", c, `{}`)
	omitted := b.admit(t, engine.TaskSpec{Namespace: "ns", Queue: "cw", Concurrency: &c, Steps: []engine.StepSpec{
		{Name: "skip", Handler: "h", When: `$.context.go == true`}}})
	last := b.admitGrouped(t, "cw", c, `{}`)
	if err := b.engine.Cancel(b.ctx, waiter, ""); err != nil {
		t.Fatal(err)
	}
	got := b.claimAll(t, "cw")
	if len(got) != 1 || got[0].TaskID != first {
		t.Fatalf("claimed %v, want only task %d", taskIDs(got), first)
	}
	if err := b.engine.Complete(b.ctx, got[0].Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, omitted), engine.TaskSucceeded, map[string]engine.StepPhase{"skip": engine.StepOmitted})
	got = b.claimAll(t, "cw")
	if len(got) != 1 || got[0].TaskID != last {
		t.Fatalf("claimed %v, want task %d (the omitted one passed its slot on)", taskIDs(got), last)
	}
}

// CancelInProgress: a new task cancels the oldest running one (the history says why); CancelNewest: a new task
// that does not fit is cancelled at once.
func TestConcurrencyCancelStrategies(t *testing.T) {
	b := setup(t)
	cip := engine.Concurrency{Group: "ci", Key: "$.context.branch", Strategy: engine.ConcurrencyCancelInProgress}
	old := b.admitGrouped(t, "cs", cip, `{"branch":"main"}`)
	other := b.admitGrouped(t, "cs", cip, `{"branch":"dev"}`)
	b.claimAll(t, "cs")
	newer := b.admitGrouped(t, "cs", cip, `{"branch":"main"}`)
	st := b.task(t, old)
	wantPhase(t, st, engine.TaskCancelled, nil)
	if tr := b.taskTransitions(t, old); tr[len(tr)-1] != "running>cancelled" {
		t.Fatalf("old task's transitions %v", tr)
	}
	h, err := b.engine.History(b.ctx, old, "")
	if err != nil {
		t.Fatal(err)
	}
	if r := h[len(h)-1].Reason; !strings.Contains(r, "CancelInProgress") || !strings.Contains(r, "ns/ci=main") {
		t.Fatalf("reason %q, want the group and the strategy", r)
	}
	wantPhase(t, b.task(t, other), engine.TaskRunning, nil)
	if got := b.claimAll(t, "cs"); len(got) != 1 || got[0].TaskID != newer {
		t.Fatalf("claimed %v, want the newer task %d", taskIDs(got), newer)
	}

	cn := engine.Concurrency{Group: "once", Strategy: engine.ConcurrencyCancelNewest}
	first := b.admitGrouped(t, "cs", cn, `{}`)
	second := b.admitGrouped(t, "cs", cn, `{}`)
	wantPhase(t, b.task(t, first), engine.TaskPending, nil)
	wantPhase(t, b.task(t, second), engine.TaskCancelled, map[string]engine.StepPhase{"only": engine.StepCancelled})
	h, err = b.engine.History(b.ctx, second, "")
	if err != nil {
		t.Fatal(err)
	}
	if r := h[len(h)-1].Reason; r != "concurrency group ns/once is full (CancelNewest)" {
		t.Fatalf("reason %q", r)
	}
}

// Keys are checked: a bad path, or one that finds nothing or an object in the context, is refused naming the
// field; the webhook's check agrees with admission's.
func TestConcurrencyKeyErrors(t *testing.T) {
	b := setup(t)
	for _, tc := range []struct{ key, context, want string }{
		{`$.(`, `{}`, "spec.concurrency.key: not a SQL/JSON path expression"},
		{`$.context.customer`, `{}`, "spec.concurrency.key: $.context.customer finds nothing"},
		{`$.context.customer`, `{"customer":{"id":1}}`, "gives an object"},
	} {
		_, err := b.engine.Admit(b.ctx, engine.TaskSpec{ExternalKey: nextKey("bad"), Queue: "ck",
			Context: json.RawMessage(tc.context), Concurrency: &engine.Concurrency{Group: "g", Key: tc.key},
			Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
		if !errors.Is(err, engine.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("key %s over %s: %v, want %q", tc.key, tc.context, err, tc.want)
		}
	}
	if p, err := b.engine.ConcurrencyKeyProblem(b.ctx, `$.(`); err != nil || !strings.Contains(p, "not a SQL/JSON path") {
		t.Errorf("ConcurrencyKeyProblem = %q, %v", p, err)
	}
	if p, err := b.engine.ConcurrencyKeyProblem(b.ctx, `$.context.customer`); err != nil || p != "" {
		t.Errorf("ConcurrencyKeyProblem = %q, %v, want none", p, err)
	}
	err := b.engine.Validate(engine.TaskSpec{ExternalKey: "x", Queue: "q", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}},
		Concurrency: &engine.Concurrency{Group: "Bad Name", MaxRunning: -1, Strategy: "Later"}})
	for _, f := range []string{"concurrency.group", "concurrency.maxRunning", "concurrency.strategy"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate: %v, want an error naming %s", err, f)
		}
	}
}

// Fairness: 1,000 tasks of key A admitted before 10 of key B do not hold B back: each key has its own slots, and
// A's waiting tasks have no message in the queue. B's tasks all finish while most of A's backlog still waits.
func TestConcurrencyKeysAreFair(t *testing.T) {
	b := setup(t)
	c := engine.Concurrency{Group: "tenant", Key: "$.context.customer", MaxRunning: 2}
	for range 1000 {
		b.admitGrouped(t, "fair", c, `{"customer":"a"}`)
	}
	var bs []int64
	for range 10 {
		bs = append(bs, b.admitGrouped(t, "fair", c, `{"customer":"b"}`))
	}
	finished := map[int64]bool{}
	doneA := 0
	for rounds := 0; len(finished) < len(bs); rounds++ {
		if rounds > 200 {
			t.Fatalf("B not done after 200 rounds: %d of 10", len(finished))
		}
		steps := b.claimAll(t, "fair")
		var done []engine.Completion
		for _, s := range steps {
			done = append(done, engine.Completion{Lease: s.Lease})
			if string(s.TaskContext) == `{"customer": "b"}` {
				finished[s.TaskID] = true
			} else {
				doneA++
			}
		}
		if _, err := b.engine.CompleteMany(b.ctx, done); err != nil {
			t.Fatal(err)
		}
	}
	if doneA > 20 {
		t.Fatalf("%d of A's tasks ran before B's 10 finished, want about as many as B's (equal slots)", doneA)
	}
}

// Queue limits: at most maxRunning steps of the queue run at once, across claims; complete_and_claim does not
// claim a limited queue's steps for its caller; the backlog the autoscaler reads counts only what the limit lets
// run; removing the limits lifts them.
func TestQueueMaxRunning(t *testing.T) {
	b := setup(t)
	if err := b.engine.SetQueueLimits(b.ctx, "lim", engine.QueueLimits{MaxRunning: 3}); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		b.admit(t, engine.TaskSpec{Queue: "lim", Steps: []engine.StepSpec{{Name: "a", Handler: "h"},
			{Name: "b", Handler: "h", DependsOn: []string{"a"}}}})
	}
	backlog := func() int64 {
		var n int64
		if err := b.pool.QueryRow(b.ctx, `SELECT tasker.queue_backlog('lim')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := backlog(); n != 3 {
		t.Fatalf("backlog %d, want 3 (8 visible, 3 may run)", n)
	}
	got := b.claimAll(t, "lim")
	if len(got) != 3 {
		t.Fatalf("claimed %d, want 3", len(got))
	}
	if more := b.claimAll(t, "lim"); len(more) != 0 {
		t.Fatalf("claimed %d more, want 0", len(more))
	}
	if n := backlog(); n != 3 {
		t.Fatalf("backlog %d, want 3 (in flight)", n)
	}
	_, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: got[0].Lease}}, 10, time.Minute, "w")
	if err != nil || len(claimed) != 0 {
		t.Fatalf("complete and claim: %d claimed, %v; want none claimed on a limited queue", len(claimed), err)
	}
	if more := b.claimAll(t, "lim"); len(more) != 1 {
		t.Fatalf("claimed %d after one finished, want 1", len(more))
	}
	st, err := b.engine.QueueLimitStates(b.ctx, []string{"lim", "other"})
	if err != nil || len(st) != 1 || st[0].MaxRunning != 3 || st[0].Running != 3 || st[0].Tokens != -1 {
		t.Fatalf("QueueLimitStates = %+v, %v", st, err)
	}
	if err := b.engine.SetQueueLimits(b.ctx, "lim", engine.QueueLimits{}); err != nil {
		t.Fatal(err)
	}
	if more := b.claimAll(t, "lim"); len(more) != 5 {
		t.Fatalf("claimed %d without limits, want the 5 visible (4 first steps, 1 second)", len(more))
	}
	if err := b.engine.SetQueueLimits(b.ctx, "Bad", engine.QueueLimits{MaxRunning: 1}); !errors.Is(err, engine.ErrInvalidArgument) {
		t.Fatalf("bad queue name: %v", err)
	}
}

// A rate limit: the bucket gives a burst of rate steps, then claims follow the rate. Checked on the claim times
// the history records, whatever the machine's speed: no window of claims holds more than the burst plus what the
// rate refilled over it. And limits set before the queue exists apply when it is created.
func TestQueueRate(t *testing.T) {
	b := setup(t)
	if err := b.engine.SetQueueLimits(b.ctx, "slow", engine.QueueLimits{RateSteps: 5, RatePeriod: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.SetQueueLimits(b.ctx, "rated", engine.QueueLimits{RateSteps: 10, RatePeriod: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b.admit(t, engine.TaskSpec{Queue: "slow", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	}
	if got := b.claimAll(t, "slow"); len(got) != 5 {
		t.Fatalf("claimed %d, want the burst of 5", len(got))
	}
	if got := b.claimAll(t, "slow"); len(got) != 0 {
		t.Fatalf("claimed %d more, want 0 (the bucket refills one step per 12 minutes)", len(got))
	}
	// The autoscaler's backlog: the 5 in flight, not the 5 the rate holds back.
	var backlog int64
	if err := b.pool.QueryRow(b.ctx, `SELECT tasker.queue_backlog('slow')`).Scan(&backlog); err != nil || backlog != 5 {
		t.Fatalf("backlog %d (%v), want 5", backlog, err)
	}

	var ids []int64
	for range 50 {
		ids = append(ids, b.admit(t, engine.TaskSpec{Queue: "rated", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}}))
	}
	n := 0
	for deadline := time.Now().Add(30 * time.Second); n < 50 && time.Now().Before(deadline); {
		got := b.claimAll(t, "rated")
		n += len(got)
		for _, s := range got {
			if err := b.engine.Complete(b.ctx, s.Lease, nil); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n != 50 {
		t.Fatalf("claimed %d of 50", n)
	}
	rows, err := b.pool.Query(b.ctx, `SELECT at FROM tasker.step_transitions WHERE task_id = ANY ($1) AND to_state = 'running' ORDER BY at`, ids)
	if err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for rows.Next() {
		var ts time.Time
		if err := rows.Scan(&ts); err != nil {
			t.Fatal(err)
		}
		at = append(at, ts)
	}
	rows.Close()
	const burst, perSecond = 10, 20.0
	// 50 claims with a burst of 10 at 20/s take 2 s of refills: the last claim comes at least 2 s after the first
	// took its tokens (less the first claim's own duration, a few milliseconds; 0.5 s of slack for a loaded machine).
	if span := at[len(at)-1].Sub(at[0]); span < 1500*time.Millisecond {
		t.Fatalf("50 claims in %s: faster than a burst of %d and %.0f/s allow", span, burst, perSecond)
	}
	for i := range at {
		for j := i; j < len(at); j++ {
			// A second of slack: a claim's history rows are written some time after it took its tokens.
			allowed := burst + perSecond*(at[j].Sub(at[i]).Seconds()+1)
			if float64(j-i+1) > allowed {
				t.Fatalf("claims %d..%d: %d in %s, more than the burst of %d and %.0f/s allow", i, j, j-i+1,
					at[j].Sub(at[i]), burst, perSecond)
			}
		}
	}
}

// Under concurrent workers completing in batches that mix groups, slots are never over-given: at most maxRunning
// tasks of a group are unfinished-and-started at any moment (from the tasks' own start and finish times), every
// task finishes, and no batch deadlocks on groups.
func TestConcurrencyUnderConcurrentWorkers(t *testing.T) {
	b := setup(t)
	c := engine.Concurrency{Group: "load", Key: "$.context.k", MaxRunning: 2}
	var ids []int64
	for i := range 60 {
		ids = append(ids, b.admitGrouped(t, "cc", c, fmt.Sprintf(`{"k":%d}`, i%3)))
	}
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			for idle := 0; idle < 50; {
				steps, err := b.engine.Claim(b.ctx, "cc", 5, time.Minute, fmt.Sprint("w", w))
				if err != nil {
					errs <- err
					return
				}
				if len(steps) == 0 {
					idle++
					time.Sleep(10 * time.Millisecond)
					continue
				}
				idle = 0
				var done []engine.Completion
				for _, s := range steps {
					done = append(done, engine.Completion{Lease: s.Lease})
				}
				if _, err := b.engine.CompleteMany(b.ctx, done); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	rows, err := b.pool.Query(b.ctx, `SELECT t.context ->> 'k', t.started_at, t.completed_at, t.state
		FROM tasker.tasks AS t WHERE t.id = ANY ($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		key        string
		start, end time.Time
	}
	var spans []span
	for rows.Next() {
		var s span
		var state string
		var start, end *time.Time
		if err := rows.Scan(&s.key, &start, &end, &state); err != nil {
			t.Fatal(err)
		}
		if state != "succeeded" || start == nil || end == nil {
			t.Fatalf("a task is %s", state)
		}
		s.start, s.end = *start, *end
		spans = append(spans, s)
	}
	rows.Close()
	for _, s := range spans {
		n := 0
		for _, o := range spans {
			if o.key == s.key && !o.start.After(s.start) && o.end.After(s.start) {
				n++
			}
		}
		if n > 2 {
			t.Fatalf("%d tasks of key %s running at once, want at most 2", n, s.key)
		}
	}
}

// Upkeep's dispatch forgets groups that have had no task for a day, and a later admission records them again.
func TestConcurrencyGroupsAreForgotten(t *testing.T) {
	b := setup(t)
	c := engine.Concurrency{Group: "old"}
	id := b.admitGrouped(t, "cf", c, `{}`)
	if err := b.engine.Cancel(b.ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(b.ctx, `UPDATE tasker.concurrency_groups SET updated_at = now() - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.engine.DispatchConcurrency(b.ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tasker.concurrency_groups`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d groups left (%v), want 0", n, err)
	}
	id = b.admitGrouped(t, "cf", c, `{}`)
	if st := b.task(t, id); st.Concurrency == nil || st.Concurrency.Waiting || st.Concurrency.MaxRunning != 1 {
		t.Fatalf("after forgetting: %+v", st.Concurrency)
	}
}

// A slot left free with waiters (a release skipped a waiter someone held) is given by the next admission, to the
// oldest waiter first, and the new task's steps are enqueued once.
func TestConcurrencyAdmissionFillsFreeSlots(t *testing.T) {
	b := setup(t)
	c := engine.Concurrency{Group: "fill", MaxRunning: 2}
	first := b.admitGrouped(t, "cfill", c, `{}`)
	second := b.admitGrouped(t, "cfill", c, `{}`)
	waiter := b.admitGrouped(t, "cfill", c, `{}`)
	// Free both slots behind the engine's back, as two skipped releases would leave them.
	if _, err := b.pool.Exec(b.ctx, `DELETE FROM tasker.concurrency_members WHERE task_id = ANY ($1)`,
		[]int64{first, second}); err != nil {
		t.Fatal(err)
	}
	newest := b.admitGrouped(t, "cfill", c, `{}`)
	for _, id := range []int64{waiter, newest} {
		st := b.task(t, id)
		if st.Concurrency == nil || st.Concurrency.Waiting {
			t.Fatalf("task %d: %+v, want a slot", id, st.Concurrency)
		}
		if tr := b.stepTransitions(t, id); len(tr) != 1 || tr[0].Reason != "concurrency slot free" {
			t.Fatalf("task %d's history %+v, want its step enqueued once, for a free slot", id, tr)
		}
	}
	if n := b.queueLength(t, "cfill"); n != 4 {
		t.Fatalf("%d messages, want 4", n)
	}
}

// A failed task frees its slot; an operator's retry takes one back at once, even beyond maxRunning.
func TestConcurrencyRetriedTaskTakesASlotBack(t *testing.T) {
	b := setup(t)
	c := engine.Concurrency{Group: "retry"}
	a := b.admitGrouped(t, "cr", c, `{}`)
	next := b.admitGrouped(t, "cr", c, `{}`)
	got := b.claimAll(t, "cr")
	if len(got) != 1 || got[0].TaskID != a {
		t.Fatalf("claimed %v, want task %d", taskIDs(got), a)
	}
	if _, err := b.engine.Fail(b.ctx, got[0].Lease, engine.Failure{Message: "no", Permanent: true}); err != nil {
		t.Fatal(err)
	}
	if st := b.task(t, next); st.Concurrency.Waiting || st.Concurrency.Running != 1 {
		t.Fatalf("after the failure: %+v, want the next task holding the slot", st.Concurrency)
	}
	if err := b.engine.RetryStep(b.ctx, a, "only"); err != nil {
		t.Fatal(err)
	}
	st := b.task(t, a)
	if st.Phase != engine.TaskRunning || st.Concurrency.Waiting || st.Concurrency.Running != 2 {
		t.Fatalf("after the retry: %s, %+v; want running with a slot, 2 of 1 taken", st.Phase, st.Concurrency)
	}
}
