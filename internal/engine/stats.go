package engine

import "context"

var sqlCounts = mustSQL("counts")

// Counts are the numbers of tasks and steps in the database (within their retention), by state.
type Counts struct {
	Tasks map[TaskPhase]int64
	Steps map[StepPhase]int64
}

// Counts returns how many tasks and steps are in each state, in one round trip (a scan of both tables: call it
// every few seconds at most).
func (e *Engine) Counts(ctx context.Context) (Counts, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	c := Counts{Tasks: map[TaskPhase]int64{}, Steps: map[StepPhase]int64{}}
	rows, err := e.pool.Query(cctx, sqlCounts)
	if err != nil {
		return c, dbError(ctx, "count tasks", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, state string
		var n int64
		if err := rows.Scan(&kind, &state, &n); err != nil {
			return c, dbError(ctx, "count tasks", err)
		}
		if kind == "task" {
			c.Tasks[TaskPhase(state)] = n
		} else {
			c.Steps[StepPhase(state)] = n
		}
	}
	if err := rows.Err(); err != nil {
		return c, dbError(ctx, "count tasks", err)
	}
	return c, nil
}
