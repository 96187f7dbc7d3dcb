// Package enginetest holds test helpers for the engine's clients and the engine's own tests: reading what the
// engine recorded (its tables directly) and waiting for tasks and steps to reach a state.
package enginetest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// Querier is what StepTransitions needs of a pool or connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Transition is one row of tasker.step_transitions, with its step's name.
type Transition struct {
	Step, From, To, Reason string
	Attempt                int
	At                     time.Time
}

// StepTransitions returns a task's step transitions in the order they were recorded.
func StepTransitions(ctx context.Context, db Querier, taskID int64) ([]Transition, error) {
	rows, err := db.Query(ctx, `
		SELECT s.name, x.from_state, x.to_state, x.reason, x.attempt, x.at
		FROM tasker.step_transitions AS x JOIN tasker.steps AS s ON s.id = x.step_id
		WHERE x.task_id = $1 ORDER BY x.id`, taskID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Transition])
}

// WaitTask polls the task every 20 ms until it is finished, and returns its state; an error after timeout.
func WaitTask(ctx context.Context, eng *engine.Engine, taskID int64, timeout time.Duration) (*engine.TaskState, error) {
	var ts *engine.TaskState
	err := poll(ctx, eng, taskID, timeout, func(s *engine.TaskState) bool { ts = s; return s.Phase.Finished() })
	if err != nil {
		return ts, fmt.Errorf("task %d not finished: %w", taskID, err)
	}
	return ts, nil
}

// WaitStep polls the task every 20 ms until its step is in phase; an error after timeout.
func WaitStep(ctx context.Context, eng *engine.Engine, taskID int64, step string, phase engine.StepPhase,
	timeout time.Duration) error {
	err := poll(ctx, eng, taskID, timeout, func(s *engine.TaskState) bool {
		st := s.Step(step)
		return st != nil && st.Phase == phase
	})
	if err != nil {
		return fmt.Errorf("step %s of task %d not %s: %w", step, taskID, phase, err)
	}
	return nil
}

func poll(ctx context.Context, eng *engine.Engine, taskID int64, timeout time.Duration, done func(*engine.TaskState) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		ts, err := eng.GetTask(ctx, taskID)
		if err != nil {
			return err
		}
		if done(ts) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still %s after %s: %v", ts.Phase, timeout, ts.Counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
