package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Operator actions. Each is one transaction and one round trip, idempotent (repeating it is a no-op), and
// notifies listeners of the task's change. Errors: ErrTaskNotFound, ErrStepNotFound, ErrInvalidTransition (with
// the reason), or a *DatabaseError.

// Cancel cancels a pending or running task: every unfinished step is cancelled, their messages deleted and their
// leases revoked (heartbeats report Cancelled; late results are rejected). A task that already finished
// (succeeded, failed or cancelled) is left as it is, without error.
func (e *Engine) Cancel(ctx context.Context, taskID int64, reason string) error {
	return e.action(ctx, "cancel task", sqlCancelTask, taskID, nullable(reason))
}

// RetryStep runs a failed step again, with a fresh retry budget. Its task resumes: steps skipped or cancelled
// because of the failure go back to pending and are enqueued as their dependencies allow. A step that is already
// queued or running again is left alone (no error); a step in any other state gives ErrInvalidTransition.
func (e *Engine) RetryStep(ctx context.Context, taskID int64, step string) error {
	return e.RetryStepWith(ctx, taskID, step, Retry{})
}

// Retry tunes RetryStepWith.
type Retry struct {
	// Reason is recorded in the step's history. Default "retried manually".
	Reason string
	// Inputs, when set (JSON), replace the step's inputs before it runs again: how an operator fixes the input
	// that made it fail.
	Inputs json.RawMessage
}

// RetryStepWith is RetryStep with a reason and, optionally, new inputs.
func (e *Engine) RetryStepWith(ctx context.Context, taskID int64, step string, r Retry) error {
	var inputs any
	if len(r.Inputs) > 0 {
		v, ok := jsonValue(r.Inputs)
		if !ok {
			return fmt.Errorf("%w: inputs are not valid JSON", ErrInvalidArgument)
		}
		if len(v) > MaxJSONSize {
			return fmt.Errorf("%w: inputs are larger than %d bytes", ErrInvalidArgument, MaxJSONSize)
		}
		inputs = v
	}
	return e.action(ctx, "retry step", sqlRetryStep, taskID, step, nullable(r.Reason), inputs)
}

// ResolveStep marks a step resolved by hand: it counts as done for the steps depending on it, which proceed,
// and it has no result. It applies to any step not yet succeeded; a running attempt loses its lease. If the task
// had failed and no failed step remains, the task resumes (or succeeds when nothing is left).
func (e *Engine) ResolveStep(ctx context.Context, taskID int64, step, reason string) error {
	return e.action(ctx, "resolve step", sqlResolveStep, taskID, step, nullable(reason))
}

// CompleteStep completes a step by hand with result (JSON; empty means null), as if its handler had returned it;
// otherwise like ResolveStep.
func (e *Engine) CompleteStep(ctx context.Context, taskID int64, step string, result json.RawMessage) error {
	res, ok := jsonValue(result)
	if !ok {
		return fmt.Errorf("%w: result is not valid JSON", ErrInvalidArgument)
	}
	return e.action(ctx, "complete step", sqlCompleteStep, taskID, step, res, nil)
}

// Signal sends the signal named signal to a task: every step of the task waiting for it (StepSpec.WaitFor)
// succeeds with payload (JSON; empty means null) as its result, and the signal is kept for steps that wait for it
// later. The first signal of a name counts: sending it again changes nothing (nil). A task that succeeded or was
// cancelled refuses it (ErrInvalidTransition); a failed one keeps it for when it resumes.
func (e *Engine) Signal(ctx context.Context, taskID int64, signal string, payload json.RawMessage, reason string) error {
	res, ok := jsonValue(payload)
	if !ok {
		return fmt.Errorf("%w: payload is not valid JSON", ErrInvalidArgument)
	}
	return e.action(ctx, "signal", sqlSignal, taskID, signal, res, nullable(reason))
}

func (e *Engine) action(ctx context.Context, op, sql string, args ...any) (err error) {
	ctx, span := startSpan(ctx, "tasker."+strings.ReplaceAll(op, " ", "_"))
	taskID, _ := args[0].(int64)
	span.SetAttributes(attrTask.Int64(taskID))
	defer func() { endSpan(span, err) }()
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	actionID := ActionOf(ctx)
	if actionID == "" {
		var status, detail string
		if err := e.pool.QueryRow(cctx, sql, args...).Scan(&status, &detail); err != nil {
			return dbError(ctx, op, err)
		}
		return actionError(status, detail)
	}
	// An action with an id (WithAction): recorded in the transaction that carries it out, or not carried out
	// again. A refused action (a noop, a transition the step cannot make) is recorded too: it was carried out.
	tx, err := e.pool.Begin(cctx)
	if err != nil {
		return dbError(ctx, op, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(cctx)) }()
	tag, err := tx.Exec(cctx, sqlRecordAction, taskID, actionID)
	if err != nil {
		return dbError(ctx, op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: action %q of task %d", ErrActionDone, actionID, taskID)
	}
	var status, detail string
	if err := tx.QueryRow(cctx, sql, args...).Scan(&status, &detail); err != nil {
		return dbError(ctx, op, err)
	}
	if err := tx.Commit(cctx); err != nil {
		return dbError(ctx, op, err)
	}
	return actionError(status, detail)
}

type actionKey struct{}

// WithAction returns a context under which RetryStep(With), ResolveStep, CompleteStep and Signal carry out the
// action of that id (a Task's spec.actions[].id, at most 253 characters) at most once per task: the id is recorded
// (tasker.task_actions) in the transaction that carries the action out, and a call with an id recorded already
// does nothing and returns ErrActionDone — so that an action whose outcome the caller failed to record (a lost
// status write) is not carried out twice. Without it (the default) every call is carried out.
func WithAction(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, actionKey{}, id)
}

// ActionOf returns the action id WithAction put in ctx ("" for none).
func ActionOf(ctx context.Context) string {
	id, _ := ctx.Value(actionKey{}).(string)
	return id
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
