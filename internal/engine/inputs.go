package engine

import (
	"context"
	"encoding/json"
	"fmt"
)

// StepInputs returns one step's inputs as admitted (nil when it has none), or ErrStepNotFound. GetTask leaves
// them out, since the operator reads every step at each status write and never needs them; the UI's step panel
// reads them one step at a time.
func (e *Engine) StepInputs(ctx context.Context, taskID int64, step string) (json.RawMessage, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var inputs json.RawMessage
	if err := e.pool.QueryRow(cctx, sqlStepInputs, taskID, step).Scan(&inputs); err != nil {
		if isNoRows(err) {
			return nil, fmt.Errorf("%w: task %d has no step %q", ErrStepNotFound, taskID, step)
		}
		return nil, dbError(ctx, "step inputs", err)
	}
	return inputs, nil
}
