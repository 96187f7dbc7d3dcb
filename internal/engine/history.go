package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// HistoryEntry is one recorded transition of a task (Step "") or of one of its steps.
type HistoryEntry struct {
	At time.Time
	// Step is the step's name; "" for a transition of the task itself.
	Step string
	// From and To are the states before and after.
	From, To string
	// Attempt is the step's attempt the transition belongs to (0 for the task's own).
	Attempt int
	// Worker is the worker that held the attempt, when one did.
	Worker string
	// Reason says why ("claimed", "completed", "lease expired", "cancelled by user", ...).
	Reason string
	// Error is the message of the failure a transition records, if any; Metadata the whole document stored
	// with it (the error, a retry's delay, manual: true for an operator action).
	Error    string
	Metadata json.RawMessage
}

// History returns a task's transitions, the task's own and its steps', oldest first; with step != "", only that
// step's. Unknown tasks and steps give ErrTaskNotFound and ErrStepNotFound.
func (e *Engine) History(ctx context.Context, taskID int64, step string) ([]HistoryEntry, error) {
	st, err := e.GetTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	var stepArg *string
	if step != "" {
		if st.Step(step) == nil {
			return nil, fmt.Errorf("%w: task %d has no step %q", ErrStepNotFound, taskID, step)
		}
		stepArg = &step
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	rows, err := e.pool.Query(cctx, sqlHistory, taskID, stepArg)
	if err != nil {
		return nil, dbError(ctx, "history", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HistoryEntry, error) {
		var (
			h       HistoryEntry
			name    *string
			attempt *int32
			worker  *string
		)
		if err := row.Scan(&h.At, &name, &h.From, &h.To, &attempt, &worker, &h.Reason, &h.Metadata); err != nil {
			return h, err
		}
		if name != nil {
			h.Step = *name
		}
		if attempt != nil {
			h.Attempt = int(*attempt)
		}
		if worker != nil {
			h.Worker = *worker
		}
		h.Error = metadataError(h.Metadata)
		return h, nil
	})
	if err != nil {
		return nil, dbError(ctx, "history", err)
	}
	return out, nil
}

// metadataError is the message of the error a transition's metadata records ({"error": ...}), or "".
func metadataError(metadata json.RawMessage) string {
	var m struct {
		Error json.RawMessage `json:"error"`
	}
	if len(metadata) == 0 || json.Unmarshal(metadata, &m) != nil {
		return ""
	}
	return errorMessage(m.Error)
}
