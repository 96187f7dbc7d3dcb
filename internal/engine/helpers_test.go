package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/enginetest"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// testBundle is what most tests need: a migrated database of their own and an engine on it.
type testBundle struct {
	ctx    context.Context
	pool   *pgxpool.Pool
	engine *engine.Engine
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	url := pgtest.NewDatabase(t)
	pool, err := store.Open(ctx, url, store.Options{MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return &testBundle{ctx: ctx, pool: pool, engine: engine.New(pool, engine.Options{})}
}

var keySeq int

func nextKey(prefix string) string {
	keySeq++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), keySeq)
}

// admit admits a spec and fails the test on error.
func (b *testBundle) admit(t testing.TB, spec engine.TaskSpec) int64 {
	t.Helper()
	if spec.ExternalKey == "" {
		spec.ExternalKey = nextKey("task")
	}
	a, err := b.engine.Admit(b.ctx, spec)
	if err != nil {
		var de *engine.DatabaseError
		if errors.As(err, &de) {
			t.Fatalf("admit: %v: %v", err, de.Err)
		}
		t.Fatalf("admit: %v", err)
	}
	if !a.Created {
		t.Fatalf("admit: task %d existed already", a.TaskID)
	}
	return a.TaskID
}

// handler is a test worker's handler: a result, or an error (a *testFailure says how to fail).
type handler func(s engine.ClaimedStep) (json.RawMessage, error)

type testFailure struct{ f engine.Failure }

func (f *testFailure) Error() string { return f.f.Message }

// drain claims from queue and runs h until task is finished (or the deadline), completing or failing each step.
// It returns the claimed steps in order.
func (b *testBundle) drain(t testing.TB, queue string, taskID int64, h handler) []engine.ClaimedStep {
	t.Helper()
	var claimed []engine.ClaimedStep
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		steps, err := b.engine.Claim(b.ctx, queue, 100, 30*time.Second, "test-worker")
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		if len(steps) == 0 {
			st := b.task(t, taskID)
			if st.Phase.Finished() {
				return claimed
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		var done []engine.Completion
		for _, s := range steps {
			claimed = append(claimed, s)
			res, err := h(s)
			if err != nil {
				f := engine.Failure{Message: err.Error()}
				var tf *testFailure
				if errors.As(err, &tf) {
					f = tf.f
				}
				if _, err := b.engine.Fail(b.ctx, s.Lease, f); err != nil {
					t.Fatalf("fail %s: %v", s.StepName, err)
				}
				continue
			}
			done = append(done, engine.Completion{Lease: s.Lease, Result: res})
		}
		if len(done) > 0 {
			errs, err := b.engine.CompleteMany(b.ctx, done)
			if err != nil {
				t.Fatalf("complete: %v", err)
			}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("complete %v: %v", done[i].Lease, err)
				}
			}
		}
	}
	t.Fatalf("task %d did not finish in time: %+v", taskID, b.task(t, taskID))
	return nil
}

func (b *testBundle) task(t testing.TB, id int64) *engine.TaskState {
	t.Helper()
	st, err := b.engine.GetTask(b.ctx, id)
	if err != nil {
		t.Fatalf("get task %d: %v", id, err)
	}
	return st
}

// queueLength counts the messages left in a queue (visible or not).
func (b *testBundle) queueLength(t testing.TB, queue string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM pgmq.q_`+queue).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type transition = enginetest.Transition

// stepTransitions returns a task's step transitions in order.
func (b *testBundle) stepTransitions(t testing.TB, taskID int64) []transition {
	t.Helper()
	out, err := enginetest.StepTransitions(b.ctx, b.pool, taskID)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *testBundle) taskTransitions(t testing.TB, taskID int64) []string {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `
		SELECT from_state || '>' || to_state FROM tasker.task_transitions WHERE task_id = $1 ORDER BY id`, taskID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func echo(s engine.ClaimedStep) (json.RawMessage, error) {
	return json.RawMessage(fmt.Sprintf(`{"step":%q}`, s.StepName)), nil
}

func wantPhase(t testing.TB, st *engine.TaskState, task engine.TaskPhase, steps map[string]engine.StepPhase) {
	t.Helper()
	if st.Phase != task {
		t.Errorf("task phase = %s, want %s", st.Phase, task)
	}
	for name, want := range steps {
		s := st.Step(name)
		if s == nil {
			t.Errorf("no step %s", name)
			continue
		}
		if s.Phase != want {
			t.Errorf("step %s phase = %s, want %s", name, s.Phase, want)
		}
	}
}

// waitForLockWait waits until a backend running a statement that contains queryPart waits for a lock (the
// interleaving a concurrency test sets up), and fails the test if none does within 30 s.
func (b *testBundle) waitForLockWait(t testing.TB, queryPart string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var waiting bool
		if err := b.pool.QueryRow(b.ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid())`, queryPart).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
	}
	t.Fatalf("no statement containing %q waited for a lock", queryPart)
}
