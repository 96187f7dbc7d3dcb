// Package enginetest holds test helpers that read the engine's tables directly: for the engine's own tests and
// for those of its clients (the worker SDK), which check what the engine recorded.
package enginetest

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
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
