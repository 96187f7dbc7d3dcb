package engine_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestUpkeepFailsTimedOutSteps(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "timeout", Steps: []engine.StepSpec{
		{Name: "slow", Handler: "h", Timeout: time.Second,
			Retry: engine.RetryPolicy{MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, Jitter: engine.NoJitter}},
	}})
	c := b.claimOne(t, "timeout", time.Hour, 5*time.Second)
	if c.Timeout != time.Second {
		t.Fatalf("timeout = %s", c.Timeout)
	}
	// Not yet timed out.
	if r, err := b.engine.Upkeep(b.ctx, time.Time{}); err != nil || r.TimedOut != 0 {
		t.Fatalf("upkeep = %+v, %v", r, err)
	}
	// Judged a little later: the attempt ran past its timeout and is retried.
	r, err := b.engine.Upkeep(b.ctx, time.Now().Add(2*time.Second))
	if err != nil || r.TimedOut != 1 {
		t.Fatalf("upkeep = %+v, %v", r, err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskRunning, map[string]engine.StepPhase{"slow": engine.StepRetrying})
	if st.Step("slow").LastErrorMessage != "step timed out after 1 seconds" {
		t.Errorf("last error = %q", st.Step("slow").LastErrorMessage)
	}
	if hb, err := b.engine.Heartbeat(b.ctx, c.Lease, time.Minute); err != nil || hb.OK {
		t.Errorf("heartbeat after timeout = %+v, %v", hb, err)
	}
	// Second attempt times out too: attempts exhausted, the task fails.
	b.claimOne(t, "timeout", time.Hour, 5*time.Second)
	if r, err := b.engine.Upkeep(b.ctx, time.Now().Add(2*time.Second)); err != nil || r.TimedOut != 1 {
		t.Fatalf("upkeep = %+v, %v", r, err)
	}
	wantPhase(t, b.task(t, id), engine.TaskFailed, map[string]engine.StepPhase{"slow": engine.StepFailed})
}

func TestUpkeepRepairsLostMessages(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "lost", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"}, {Name: "b", Handler: "h"},
	}})
	// b is running under a lease that expires; a is enqueued. Both messages vanish (someone purged the queue).
	steps, err := b.engine.Claim(b.ctx, "lost", 1, time.Second, "w")
	if err != nil || len(steps) != 1 {
		t.Fatalf("claim: %v %d", err, len(steps))
	}
	if _, err := b.pool.Exec(b.ctx, `SELECT pgmq.purge_queue('lost'::text)`); err != nil {
		t.Fatal(err)
	}
	b.claimNone(t, "lost")
	if r, err := b.engine.Upkeep(b.ctx, time.Time{}); err != nil || r.Repaired != 0 {
		t.Fatalf("upkeep within the grace period = %+v, %v", r, err) // too early to tell
	}
	r, err := b.engine.Upkeep(b.ctx, time.Now().Add(time.Minute))
	if err != nil || r.Repaired != 2 {
		t.Fatalf("upkeep = %+v, %v", r, err)
	}
	// Both run now; the expired one as attempt 2.
	got := map[string]int{}
	for len(got) < 2 {
		for _, s := range b.drainOnce(t, "lost") {
			got[s.StepName] = s.Attempt
		}
	}
	if got[steps[0].StepName] != 2 {
		t.Errorf("attempts = %v", got)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

// drainOnce claims what is there and completes it.
func (b *testBundle) drainOnce(t *testing.T, queue string) []engine.ClaimedStep {
	t.Helper()
	steps, err := b.engine.Claim(b.ctx, queue, 100, time.Minute, "w")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if err := b.engine.Complete(b.ctx, s.Lease, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(steps) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	return steps
}

func TestUpkeepDeletesExpiredTasks(t *testing.T) {
	b := setup(t)
	done := b.admit(t, engine.TaskSpec{Queue: "gc", Retention: time.Second, Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	b.drain(t, "gc", done, echo)
	running := b.admit(t, engine.TaskSpec{Queue: "gc2", Retention: time.Second, Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	if err := b.engine.RecordWorker(b.ctx, engine.WorkerInfo{ID: "w-old", Queues: []string{"gc"}, Slots: 4}); err != nil {
		t.Fatal(err)
	}

	if r, err := b.engine.Upkeep(b.ctx, time.Time{}); err != nil || r.DeletedTasks != 0 {
		t.Fatalf("upkeep before expiry = %+v, %v", r, err)
	}
	r, err := b.engine.Upkeep(b.ctx, time.Now().Add(48*time.Hour))
	if err != nil || r.DeletedTasks != 1 || r.WorkersDeleted != 1 {
		t.Fatalf("upkeep = %+v, %v", r, err)
	}
	if _, err := b.engine.GetTask(b.ctx, done); err == nil {
		t.Error("expired task still there")
	}
	var history int
	if err := b.pool.QueryRow(b.ctx, `SELECT (SELECT count(*) FROM tasker.step_transitions WHERE task_id = $1)
		+ (SELECT count(*) FROM tasker.task_transitions WHERE task_id = $1)
		+ (SELECT count(*) FROM tasker.steps WHERE task_id = $1)`, done).Scan(&history); err != nil || history != 0 {
		t.Errorf("%d rows of history left, %v", history, err)
	}
	b.task(t, running) // unfinished tasks are kept
}

func TestConcurrentUpkeep(t *testing.T) {
	b := setup(t)
	for range 20 {
		b.admit(t, engine.TaskSpec{Queue: "cu", Retention: time.Second, Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", Timeout: time.Second}}})
	}
	steps, err := b.engine.Claim(b.ctx, "cu", 100, time.Hour, "w")
	if err != nil || len(steps) != 20 {
		t.Fatalf("claim: %d %v", len(steps), err)
	}
	var wg sync.WaitGroup
	total := make([]engine.UpkeepReport, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := b.engine.Upkeep(b.ctx, time.Now().Add(5*time.Second))
			if err != nil {
				t.Error(err)
			}
			total[i] = r
		}()
	}
	wg.Wait()
	n := 0
	for _, r := range total {
		n += r.TimedOut
	}
	if n != 20 {
		t.Errorf("timed out %d steps in all, want 20 (each once)", n)
	}
}

// A retrying step whose message vanished (archived by hand) is repaired like any other: upkeep used to clear its
// next_attempt_at, which a retrying step must have, and so failed on the steps table's CHECK on every run (issue 13).
func TestUpkeepRepairsRetryingStepWithoutMessage(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "qa", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h", Retry: engine.RetryPolicy{MaxAttempts: 3, BackoffBase: 10 * time.Minute,
			BackoffMax: 10 * time.Minute, Jitter: engine.NoJitter}},
	}})
	c := b.claimOne(t, "qa", time.Minute, 0)
	if r, err := b.engine.Fail(b.ctx, c.Lease, engine.Failure{Message: "boom"}); err != nil || !r.Retrying {
		t.Fatalf("fail = %+v, %v", r, err)
	}
	if _, err := b.pool.Exec(b.ctx, `SELECT pgmq.archive('qa', (SELECT msg_id FROM tasker.steps WHERE task_id = $1))`, id); err != nil {
		t.Fatal(err)
	}
	r, err := b.engine.Upkeep(b.ctx, time.Now().Add(time.Hour))
	if err != nil || r.Repaired != 1 {
		t.Fatalf("upkeep = %+v, %v", r, err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskRunning, map[string]engine.StepPhase{"a": engine.StepRetrying})
	if n := b.queueLength(t, "qa"); n != 1 {
		t.Fatalf("queue qa has %d messages after the repair, want 1", n)
	}
	// The repaired message is due at once (the backoff was over at as_of); the step runs as attempt 2.
	if got := b.drainOnce(t, "qa"); len(got) != 1 || got[0].Attempt != 2 {
		t.Fatalf("claimed after repair: %+v", got)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

// Upkeep takes its locks as one set in the order of locks.sql. It used to lock the tasks of timed-out steps, then
// the tasks of steps that lost their message: with a timed-out step of task B and a lost message of task A, a
// completion locking A's then B's steps (ascending, as complete_many does) deadlocked with it (issue 13).
func TestUpkeepLocksInOneOrder(t *testing.T) {
	b := setup(t)
	taskA := b.admit(t, engine.TaskSpec{Queue: "dla", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	taskB := b.admit(t, engine.TaskSpec{Queue: "dlb", Steps: []engine.StepSpec{{Name: "b", Handler: "h", Timeout: time.Second}}})
	if _, err := b.pool.Exec(b.ctx, `SELECT pgmq.purge_queue('dla')`); err != nil { // A's step loses its message
		t.Fatal(err)
	}
	b.claimOne(t, "dlb", time.Hour, time.Second) // B's step runs, and will be past its timeout
	var stepA, stepB int64
	if err := b.pool.QueryRow(b.ctx, `SELECT (SELECT id FROM tasker.steps WHERE task_id = $1),
		(SELECT id FROM tasker.steps WHERE task_id = $2)`, taskA, taskB).Scan(&stepA, &stepB); err != nil {
		t.Fatal(err)
	}
	if stepA >= stepB {
		t.Fatalf("step ids %d, %d: the test needs A's below B's", stepA, stepB)
	}

	// A completion of A's and B's steps, caught between its two step locks.
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	if _, err := tx.Exec(b.ctx, `SET LOCAL lock_timeout = '20s'`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(b.ctx, `SELECT 1 FROM tasker.steps WHERE id = $1 FOR NO KEY UPDATE`, stepA); err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   engine.UpkeepReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := b.engine.Upkeep(b.ctx, time.Now().Add(time.Minute))
		done <- result{r, err}
	}()
	// Upkeep waits for A's step, which the completion holds.
	b.waitForLockWait(t, "tasker.upkeep")
	// The completion's second lock: upkeep must not hold it.
	if _, err := tx.Exec(b.ctx, `SELECT 1 FROM tasker.steps WHERE id = $1 FOR NO KEY UPDATE`, stepB); err != nil {
		t.Fatalf("completion's lock of B's step: %v", err)
	}
	if err := tx.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.r.TimedOut != 1 || res.r.Repaired != 1 {
		t.Fatalf("upkeep = %+v, %v", res.r, res.err)
	}
}

// A task deleted by hand takes its history with it, as one deleted by retention does: the histories have no
// foreign key, and used to grow for ever with such deletions (issue 13).
func TestHistoryGoesWithItsTask(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "hist", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	keep := b.admit(t, engine.TaskSpec{Queue: "hist", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	b.drain(t, "hist", id, func(engine.ClaimedStep) (json.RawMessage, error) { return nil, nil })
	if _, err := b.pool.Exec(b.ctx, `DELETE FROM tasker.tasks WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	count := func(task int64) (n int) {
		if err := b.pool.QueryRow(b.ctx, `SELECT (SELECT count(*) FROM tasker.step_transitions WHERE task_id = $1)
			+ (SELECT count(*) FROM tasker.task_transitions WHERE task_id = $1)`, task).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(id); n != 0 {
		t.Errorf("%d history rows left of the deleted task", n)
	}
	if n := count(keep); n == 0 {
		t.Error("the other task's history went too")
	}
}

// Upkeep drops the queues tasker created once no step uses them and they are old enough; it keeps queues in use,
// young ones, and queues that existed in pgmq before tasker used them. A dropped queue comes back with its next task.
func TestUpkeepDropsUnusedQueues(t *testing.T) {
	b := setup(t)
	if _, err := b.pool.Exec(b.ctx, `SELECT pgmq."create"('foreign_q'::text)`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"gone", "foreign_q"} {
		id := b.admit(t, engine.TaskSpec{Queue: q, Retention: time.Second, Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
		b.drain(t, q, id, echo)
	}
	b.admit(t, engine.TaskSpec{Queue: "busy", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	queues := func() map[string]bool {
		t.Helper()
		rows, err := b.pool.Query(b.ctx, `SELECT q.name, to_regclass('pgmq.q_' || q.name) IS NOT NULL FROM tasker.queues AS q`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for rows.Next() {
			var name string
			var exists bool
			if err := rows.Scan(&name, &exists); err != nil {
				t.Fatal(err)
			}
			out[name] = exists
		}
		return out
	}

	// The tasks are deleted a day later, but the queues are younger than UnusedQueueAge (a day) then: kept.
	if r, err := b.engine.Upkeep(b.ctx, time.Now().Add(time.Hour)); err != nil || r.DeletedTasks != 2 || r.QueuesDropped != 0 {
		t.Fatalf("upkeep = %+v, %v", r, err)
	}
	r, err := b.engine.Upkeep(b.ctx, time.Now().Add(48*time.Hour))
	if err != nil || r.QueuesDropped != 1 {
		t.Fatalf("upkeep two days later = %+v, %v (want the one unused queue tasker created dropped)", r, err)
	}
	if got := queues(); len(got) != 2 || !got["busy"] || !got["foreign_q"] {
		t.Errorf("queues after upkeep %v: want busy (in use) and foreign_q (not tasker's) kept, gone dropped", got)
	}
	var table *string
	if err := b.pool.QueryRow(b.ctx, `SELECT to_regclass('pgmq.q_gone')::text`).Scan(&table); err != nil || table != nil {
		t.Errorf("pgmq's table of queue gone: %v, %v (want it dropped)", table, err)
	}

	// The name is free to use again: the next task creates the queue again and runs.
	id := b.admit(t, engine.TaskSpec{Queue: "gone", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	b.drain(t, "gone", id, echo)
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

// An admission holds its queue's row from _ensure_queue to its commit: a concurrent drop skips the queue, even
// though no step of it is visible yet.
func TestDropUnusedQueuesSkipsAQueueBeingAdmitted(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "racy", Retention: time.Second, Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	b.drain(t, "racy", id, echo)
	if _, err := b.engine.Upkeep(b.ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	if _, err := tx.Exec(b.ctx, `SELECT tasker._ensure_queue('racy')`); err != nil {
		t.Fatal(err)
	}
	var dropped int
	drop := `SELECT tasker.drop_unused_queues(10, 0, now() + interval '1 day')`
	if err := b.pool.QueryRow(b.ctx, drop).Scan(&dropped); err != nil || dropped != 0 {
		t.Fatalf("drop while an admission holds the queue: %d, %v (want 0)", dropped, err)
	}
	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.pool.QueryRow(b.ctx, drop).Scan(&dropped); err != nil || dropped != 1 {
		t.Fatalf("drop after the admission ended: %d, %v (want 1)", dropped, err)
	}
	if _, err := b.pool.Exec(b.ctx, `SELECT tasker.drop_unused_queues(0)`); err == nil || !strings.Contains(err.Error(), "22023") {
		t.Errorf("batch_size 0: %v, want 22023", err)
	}
}
