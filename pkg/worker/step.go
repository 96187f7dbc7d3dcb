package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// HandlerFunc runs one attempt of a step. It returns the step's result (encoded with encoding/json; see Result)
// or an error:
//
//   - a plain error fails the attempt retryably: the engine retries the step after its backoff (the task's
//     retry policy) until its attempts are used up;
//   - Permanent(err) fails the step for good (and with it the task), without retries;
//   - RetryAfter(err, d) is retried after d instead of the backoff (a rate limit's Retry-After, say).
//
// ctx is cancelled when the handler should stop: its task was cancelled (context.Cause(ctx) is ErrStopped), its
// lease was lost (ErrLeaseLost), the step's timeout passed (ErrStepTimeout) or the worker's drain timeout was
// reached during shutdown (ErrDraining). A handler should return promptly then; whatever it returns after a
// stop or a lost lease is discarded. A panic is recovered and fails the attempt retryably.
type HandlerFunc func(ctx context.Context, step Step) (Result, error)

// Result is what a handler returns on success. It is stored as the step's result (JSONB) and handed to the steps
// that depend on it: any value encoding/json can encode; a json.RawMessage is taken as is (it must be valid
// JSON), and nil is stored as JSON null.
type Result = any

// Step is one claimed step, as its handler sees it.
type Step struct {
	// TaskID and StepID identify the task and the step in the database.
	TaskID int64
	StepID int64
	// Name is the step's name in its task; Handler the handler name it was declared with.
	Name    string
	Handler string
	// Queue is the queue the step was claimed from.
	Queue string
	// Inputs is the step's free JSON input (JSON null when it has none). See DecodeInputs.
	Inputs json.RawMessage
	// TaskContext is the task's free JSON context, shared by all its steps (JSON null when none) — for a step of
	// a child workflow (a step named "<step>/<child step>"), the child's context, with its parameters under
	// "params". See DecodeContext.
	TaskContext json.RawMessage
	// DependencyResults holds the result of every step this one depends on, keyed by step name (JSON null for
	// a dependency an operator resolved by hand); in a child workflow, by the names within the child (so a
	// template's handlers read the same keys whoever runs it). See DecodeDependency.
	DependencyResults map[string]json.RawMessage
	// Attempt is 1 for the first attempt. A retry, or a re-claim after a worker lost its lease (it died, say),
	// counts as a new attempt; a step given back during a graceful shutdown does not.
	Attempt int
	// Timeout is the step's per-attempt limit (0: none); the handler's context has this deadline.
	Timeout time.Duration
	// WorkerID is the id of the worker running the step.
	WorkerID string
	// Item is, for an instance of a map step (a step with forEach), its element of the array (JSON), and
	// ItemIndex its position in the array, from 0: the instance named "<step>[<ItemIndex>]". For any other step
	// Item is nil and ItemIndex -1. See DecodeItem and IsMapInstance.
	Item      json.RawMessage
	ItemIndex int
}

// IsMapInstance reports whether the step is an instance of a map step (forEach), with an Item (JSON, "null" for
// a null element: never empty).
func (s Step) IsMapInstance() bool { return len(s.Item) > 0 }

// DecodeItem decodes Item into v (a pointer). A null item, or a step that is not a map instance, leaves v
// untouched.
func (s Step) DecodeItem(v any) error { return decode("item", s.Item, v) }

// DecodeInputs decodes Inputs into v (a pointer). Missing (null) inputs leave v untouched.
func (s Step) DecodeInputs(v any) error { return decode("inputs", s.Inputs, v) }

// DecodeContext decodes TaskContext into v (a pointer). A missing (null) context leaves v untouched.
func (s Step) DecodeContext(v any) error { return decode("task context", s.TaskContext, v) }

// DecodeDependency decodes the result of the dependency named step into v (a pointer). A null result leaves v
// untouched; a name that is not a dependency of this step is an error.
func (s Step) DecodeDependency(step string, v any) error {
	raw, ok := s.DependencyResults[step]
	if !ok {
		return fmt.Errorf("worker: step %q does not depend on %q", s.Name, step)
	}
	return decode("result of "+step, raw, v)
}

func decode(what string, raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("worker: decode %s: %w", what, err)
	}
	return nil
}

// Causes of a handler's context cancellation (context.Cause).
var (
	// ErrStopped: the step was stopped while its handler ran: its task was cancelled (or failed because of
	// another step), or an operator completed or resolved the step by hand. The handler's result is discarded.
	ErrStopped = errors.New("worker: step stopped: its task was cancelled or finished, or an operator finished the step")
	// ErrLeaseLost: the worker could not extend the step's lease in time (the database was unreachable, or the
	// lease expired and another worker may have claimed the step). The handler's result is discarded.
	ErrLeaseLost = errors.New("worker: lease lost")
	// ErrStepTimeout: the step's per-attempt timeout passed. The attempt fails retryably.
	ErrStepTimeout = errors.New("worker: step timed out")
	// ErrDraining: the worker is shutting down and its drain timeout passed. If the handler then returns an
	// error, the step is given back (released) without counting the attempt.
	ErrDraining = errors.New("worker: shutting down: drain timeout reached")
)

// permanentError marks an error as not worth retrying.
type permanentError struct{ err error }

func (e *permanentError) Error() string {
	if e.err == nil {
		return "permanent failure"
	}
	return e.err.Error()
}
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the step fails without further attempts, and so does its task (the steps
// below it are skipped, the others cancelled). Permanent(nil) is a permanent failure without a message.
func Permanent(err error) error { return &permanentError{err: err} }

// IsPermanent reports whether err (or an error it wraps) was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError carries the delay before the next attempt.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("retry after %s", e.delay)
	}
	return e.err.Error()
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter fails the attempt retryably and asks for the next attempt after d, instead of the step's backoff
// policy (millisecond precision; d <= 0 means the backoff policy). The step's attempt limit still applies.
func RetryAfter(err error, d time.Duration) error { return &retryAfterError{err: err, delay: d} }

// RetryDelay returns the delay given with RetryAfter somewhere in err's chain.
func RetryDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) && r.delay > 0 {
		return r.delay, true
	}
	return 0, false
}
