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
