package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// 8 claimers race over 1,000 tasks of 5 steps (a; b, c after a; d after b and c; e after d): every step succeeds
// exactly once, no step is ever held under two valid leases, and no message is left behind.
func TestConcurrentClaimers(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	b := setup(t)
	const tasks, stepsPerTask, claimers = 1000, 5, 8
	spec := func(i int) engine.TaskSpec {
		return engine.TaskSpec{ExternalKey: fmt.Sprintf("conc-%d", i), Queue: "conc", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h"},
			{Name: "b", Handler: "h", DependsOn: []string{"a"}},
			{Name: "c", Handler: "h", DependsOn: []string{"a"}},
			{Name: "d", Handler: "h", DependsOn: []string{"b", "c"}},
			{Name: "e", Handler: "h", DependsOn: []string{"d"}},
		}}
	}
	// Admit concurrently with the claimers: admissions and claims interleave.
	var admitted sync.WaitGroup
	admitErr := make(chan error, 4)
	for g := range 4 {
		admitted.Add(1)
		go func() {
			defer admitted.Done()
			for i := g; i < tasks; i += 4 {
				if _, err := b.engine.Admit(b.ctx, spec(i)); err != nil {
					admitErr <- err
					return
				}
			}
		}()
	}

	var (
		mu        sync.Mutex
		held      = map[int64]engine.Lease{} // step -> lease currently held by a test worker
		completed atomic.Int64
		failures  = make(chan string, 100)
	)
	report := func(format string, args ...any) {
		select {
		case failures <- fmt.Sprintf(format, args...):
		default:
		}
	}
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker := fmt.Sprintf("w%d", w)
			for ctx.Err() == nil && completed.Load() < tasks*stepsPerTask {
				steps, err := b.engine.Claim(ctx, "conc", 20, time.Minute, worker)
				if err != nil {
					if ctx.Err() == nil {
						report("claim: %v", err)
					}
					return
				}
				if len(steps) == 0 {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				mu.Lock()
				for _, s := range steps {
					if other, ok := held[s.StepID]; ok {
						report("step %d claimed under %v while %v is held", s.StepID, s.Lease, other)
					}
					held[s.StepID] = s.Lease
				}
				mu.Unlock()
				var errs []error
				if w%2 == 0 {
					var cs []engine.Completion
					for _, s := range steps {
						cs = append(cs, engine.Completion{Lease: s.Lease, Result: json.RawMessage(fmt.Sprint(s.StepID))})
					}
					errs, err = b.engine.CompleteMany(ctx, cs)
				} else {
					for _, s := range steps {
						if err = b.engine.Complete(ctx, s.Lease, json.RawMessage(fmt.Sprint(s.StepID))); err != nil {
							break
						}
						errs = append(errs, nil)
					}
				}
				if err != nil {
					report("complete: %v", err)
					return
				}
				mu.Lock()
				for i, s := range steps {
					if errs[i] != nil {
						report("complete %d: %v", s.StepID, errs[i])
					}
					delete(held, s.StepID)
				}
				mu.Unlock()
				completed.Add(int64(len(steps)))
			}
		}()
	}
	admitted.Wait()
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	select {
	case err := <-admitErr:
		t.Fatal(err)
	default:
	}
	if n := completed.Load(); n != tasks*stepsPerTask {
		t.Fatalf("completed %d steps, want %d", n, tasks*stepsPerTask)
	}

	var (
		notSucceeded, succeededTransitions, multi, claims, leftTasks int
	)
	err := b.pool.QueryRow(b.ctx, `
		SELECT (SELECT count(*) FROM tasker.steps WHERE state <> 'succeeded'),
		       (SELECT count(*) FROM tasker.step_transitions WHERE to_state = 'succeeded'),
		       (SELECT count(*) FROM (SELECT step_id FROM tasker.step_transitions WHERE to_state = 'succeeded'
		                              GROUP BY step_id HAVING count(*) > 1) AS x),
		       (SELECT count(*) FROM tasker.step_transitions WHERE to_state = 'running'),
		       (SELECT count(*) FROM tasker.tasks WHERE state <> 'succeeded' OR unfinished_steps <> 0)`).
		Scan(&notSucceeded, &succeededTransitions, &multi, &claims, &leftTasks)
	if err != nil {
		t.Fatal(err)
	}
	if notSucceeded != 0 || succeededTransitions != tasks*stepsPerTask || multi != 0 || claims != tasks*stepsPerTask ||
		leftTasks != 0 {
		t.Errorf("not succeeded %d, succeeded transitions %d, steps succeeded twice %d, claims %d, tasks left %d",
			notSucceeded, succeededTransitions, multi, claims, leftTasks)
	}
	if n := b.queueLength(t, "conc"); n != 0 {
		t.Errorf("%d messages left in the queue", n)
		rows, _ := b.pool.Query(b.ctx, `SELECT m.msg_id, m.read_ct, m.vt > now(), m.message::text, s.state, s.msg_id, s.name
			FROM pgmq.q_conc m LEFT JOIN tasker.steps s ON s.id = (m.message->>'step_id')::bigint ORDER BY 1`)
		for rows.Next() {
			var a, rc int64
			var inv bool
			var msg, st, name string
			var smsg int64
			_ = rows.Scan(&a, &rc, &inv, &msg, &st, &smsg, &name)
			t.Logf("msg %d read %d invisible %v %s step %s %s msg %d", a, rc, inv, msg, name, st, smsg)
		}
		rows.Close()
	}
}

// fanOutSpec is a task whose root has n children, all joined by one last step.
func fanOutSpec(key string, n int) engine.TaskSpec {
	steps := []engine.StepSpec{{Name: "root", Handler: "h"}}
	join := engine.StepSpec{Name: "join", Handler: "h"}
	for i := range n {
		name := fmt.Sprintf("c%04d", i)
		steps = append(steps, engine.StepSpec{Name: name, Handler: "h", DependsOn: []string{"root"}})
		join.DependsOn = append(join.DependsOn, name)
	}
	return engine.TaskSpec{ExternalKey: key, Queue: "fan", Steps: append(steps, join)}
}

// burnDown runs claimers on queue until stop() says so: each claims up to batch steps, holds them for pause (a
// handler's work) and completes them in one call. It returns how many completions were accepted and how many
// were rejected as stale.
func burnDown(ctx context.Context, t *testing.T, b *testBundle, queue string, claimers, batch int, pause time.Duration,
	stop func() bool) (ok, stale int64) {
	t.Helper()
	var accepted, rejected atomic.Int64
	var wg sync.WaitGroup
	for w := range claimers {
		wg.Go(func() {
			for ctx.Err() == nil && !stop() {
				steps, err := b.engine.Claim(ctx, queue, batch, time.Minute, fmt.Sprintf("w%d", w))
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("claim: %v", err)
					}
					return
				}
				if len(steps) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				cs := make([]engine.Completion, len(steps))
				for i, s := range steps {
					cs[i] = engine.Completion{Lease: s.Lease}
				}
				time.Sleep(pause)
				errs, err := b.engine.CompleteMany(ctx, cs)
				if err != nil {
					t.Errorf("complete: %v", err)
					return
				}
				for _, e := range errs {
					if e == nil {
						accepted.Add(1)
					} else {
						rejected.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	return accepted.Load(), rejected.Load()
}

// A 1,000-step fan-out (root, 998 children, and their fan-in) claimed by 8 workers at once: every step succeeds exactly once,
// the join step is enqueued and claimed once, the task succeeds once, and no message is left.
func TestConcurrentFanOut(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	b := setup(t)
	const n, claimers = 998, 8 // root + 998 children + join: the 1,000-step cap
	id := b.admit(t, fanOutSpec("fan-1000", n))
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	ok, stale := burnDown(ctx, t, b, "fan", claimers, 20, 0, func() bool {
		// One cheap read per round (GetTask would read all 1,000 steps, twice).
		var finished bool
		err := b.pool.QueryRow(ctx, `SELECT completed_at IS NOT NULL FROM tasker.tasks WHERE id = $1`, id).Scan(&finished)
		return err == nil && finished
	})
	if ok != n+2 || stale != 0 {
		t.Errorf("%d completions accepted, %d stale; want %d and 0", ok, stale, n+2)
	}
	var notSucceeded, succeeded, multi, joinClaims, joinEnqueued, taskSucceeded int
	if err := b.pool.QueryRow(b.ctx, `
		SELECT (SELECT count(*) FROM tasker.steps WHERE task_id = $1 AND state <> 'succeeded'),
		       (SELECT count(*) FROM tasker.step_transitions WHERE task_id = $1 AND to_state = 'succeeded'),
		       (SELECT count(*) FROM (SELECT step_id FROM tasker.step_transitions WHERE task_id = $1 AND to_state = 'succeeded'
		                              GROUP BY step_id HAVING count(*) > 1) AS x),
		       (SELECT count(*) FROM tasker.step_transitions AS x JOIN tasker.steps AS s ON s.id = x.step_id
		        WHERE s.task_id = $1 AND s.name = 'join' AND x.to_state = 'running'),
		       (SELECT count(*) FROM tasker.step_transitions AS x JOIN tasker.steps AS s ON s.id = x.step_id
		        WHERE s.task_id = $1 AND s.name = 'join' AND x.to_state = 'enqueued'),
		       (SELECT count(*) FROM tasker.task_transitions WHERE task_id = $1 AND to_state = 'succeeded')`, id).
		Scan(&notSucceeded, &succeeded, &multi, &joinClaims, &joinEnqueued, &taskSucceeded); err != nil {
		t.Fatal(err)
	}
	if notSucceeded != 0 || succeeded != n+2 || multi != 0 || joinClaims != 1 || joinEnqueued != 1 || taskSucceeded != 1 {
		t.Errorf("not succeeded %d, succeeded transitions %d (want %d), twice %d, join claimed %d enqueued %d times, "+
			"task succeeded %d times", notSucceeded, succeeded, n+2, multi, joinClaims, joinEnqueued, taskSucceeded)
	}
	if l := b.queueLength(t, "fan"); l != 0 {
		t.Errorf("%d messages left in the queue", l)
	}
}

// Cancelling a 1,000-step fan-out while 8 workers claim and complete its steps freezes it: once the cancellation
// is recorded no step of the task starts or succeeds, completions of its steps are rejected, every step ends
// succeeded, cancelled or skipped, and no message is left.
func TestCancelFreezesFanOutUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	b := setup(t)
	const n, claimers = 998, 8 // root + 998 children + join: the 1,000-step cap
	id := b.admit(t, fanOutSpec("fan-cancel", n))
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	var cancelled atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Cancel once a third of the children succeeded.
		for ctx.Err() == nil {
			var done int
			if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM tasker.steps WHERE task_id = $1 AND state = 'succeeded'`,
				id).Scan(&done); err != nil || done > n/3 {
				break
			}
		}
		if err := b.engine.Cancel(ctx, id, "test"); err != nil {
			t.Errorf("cancel: %v", err)
		}
		cancelled.Store(true)
	}()
	// Batches of 5 held for 80 ms: the burn-down lasts about two seconds however loaded the machine is, so the
	// cancellation lands in the middle of it.
	burnDown(ctx, t, b, "fan", claimers, 5, 80*time.Millisecond, func() bool {
		return cancelled.Load() && b.queueLength(t, "fan") == 0
	})
	<-done

	var after, live, succeeded int
	var state string
	if err := b.pool.QueryRow(b.ctx, `
		SELECT (SELECT count(*) FROM tasker.step_transitions AS x
		        WHERE x.task_id = $1 AND x.to_state IN ('running', 'succeeded', 'enqueued')
		          AND x.at > (SELECT at FROM tasker.task_transitions WHERE task_id = $1 AND to_state = 'cancelled')),
		       (SELECT count(*) FROM tasker.steps WHERE task_id = $1 AND state NOT IN ('succeeded', 'cancelled', 'skipped')),
		       (SELECT count(*) FROM tasker.steps WHERE task_id = $1 AND state = 'succeeded'),
		       (SELECT state FROM tasker.tasks WHERE id = $1)`, id).Scan(&after, &live, &succeeded, &state); err != nil {
		t.Fatal(err)
	}
	if state != "cancelled" || after != 0 || live != 0 || succeeded < n/3 || succeeded > n+1 { // root and children; never the join
		t.Errorf("task %s; %d steps started or succeeded after the cancellation; %d steps not stopped; %d succeeded",
			state, after, live, succeeded)
	}
	if l := b.queueLength(t, "fan"); l != 0 {
		t.Errorf("%d messages left in the queue", l)
	}
}
