package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors returned by the engine, for errors.Is. Their messages, and the messages of the errors wrapping them, are
// safe to show to a Kubernetes user: they never contain SQL or server internals.
var (
	// ErrTaskNotFound: no task with that id or external key (never admitted, or deleted after its retention).
	ErrTaskNotFound = errors.New("task not found")
	// ErrStepNotFound: the task has no step of that name.
	ErrStepNotFound = errors.New("step not found")
	// ErrInvalidTransition: the operation does not apply to the task or step in its current state; the wrapping
	// error says which state and why.
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrStaleLease: a worker reported on a lease that is no longer valid (re-claimed after its visibility
	// timeout, released, or the step was stopped). Nothing was changed.
	ErrStaleLease = errors.New("stale lease")
	// ErrResultRefused: the database refused a reported result (larger than tasker.max_result_bytes(), or it would
	// bring what a child step receives from its parents over tasker.max_dependency_results_bytes()), and failed the
	// step for good instead, with the reason as its error. The lease is gone.
	ErrResultRefused = errors.New("result refused: the step failed")
	// ErrReleaseCounted: a release was not free: the step had been given back tasker.max_releases() times already,
	// so it counted as a failed attempt (the step is retrying, or failed with its task). The lease is gone.
	ErrReleaseCounted = errors.New("release counted as a failed attempt")
	// ErrInvalidSpec: a TaskSpec failed validation; the error is a *SpecError listing every problem.
	ErrInvalidSpec = errors.New("invalid task spec")
	// ErrInvalidArgument: an argument of a protocol call is out of range (a queue name, a batch size, ...).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrActionDone: an action with an id (WithAction) was carried out already; nothing was done now.
	ErrActionDone = errors.New("action carried out already")
	// ErrDatabase: the database failed in an unexpected way. The error is a *DatabaseError whose cause
	// (errors.Unwrap) has the details for logs.
	ErrDatabase = errors.New("database error")
	// ErrUnavailable: the database could not be reached or did not answer in time, or the operation lost a
	// conflict it may win when retried. Also a *DatabaseError, also matching ErrDatabase. Retry later.
	ErrUnavailable = errors.New("database unavailable")
)

// FieldError is one problem of a TaskSpec. Field is a path in the spec such as "steps[2].dependsOn[0]" ("" for
// the spec as a whole).
type FieldError struct {
	Field   string
	Message string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// SpecError lists every problem found in a TaskSpec. It matches ErrInvalidSpec.
type SpecError struct {
	Errors []FieldError
}

func (e *SpecError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidSpec.Error())
	for i, fe := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidSpec) true.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

// DatabaseError is an unexpected database failure during Op. Its message is generic; Unwrap returns the driver's
// error for logs. It matches ErrDatabase, and ErrUnavailable when Unavailable.
type DatabaseError struct {
	Op          string
	Unavailable bool
	Err         error
}

func (e *DatabaseError) Error() string {
	if e.Unavailable {
		return "tasker: " + e.Op + ": " + ErrUnavailable.Error()
	}
	return "tasker: " + e.Op + ": " + ErrDatabase.Error()
}

// Unwrap returns the underlying driver error.
func (e *DatabaseError) Unwrap() error { return e.Err }

// Is matches ErrDatabase always and ErrUnavailable when the failure is transient.
func (e *DatabaseError) Is(target error) bool {
	return target == ErrDatabase || (e.Unavailable && target == ErrUnavailable)
}

// dbError turns an error from pgx into one of the engine's errors. callerCtx is the context the caller gave (not
// the one with the engine's default timeout), to tell a caller's cancellation from a timeout of ours.
func dbError(callerCtx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := callerCtx.Err(); cerr != nil && (errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)) {
		return fmt.Errorf("tasker: %s: %w", op, cerr)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "22023": // raised by tasker's functions, with a message written for callers
			return fmt.Errorf("tasker: %s: %w: %s", op, ErrInvalidArgument, pgErr.Message)
		case transientSQLState(pgErr.Code):
			return &DatabaseError{Op: op, Unavailable: true, Err: err}
		default:
			return &DatabaseError{Op: op, Err: err}
		}
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.As(err, &netErr) || errors.As(err, &connectErr) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "closed pool") || strings.Contains(err.Error(), "conn closed") {
		return &DatabaseError{Op: op, Unavailable: true, Err: err}
	}
	return &DatabaseError{Op: op, Err: err}
}

func transientSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection exception
		strings.HasPrefix(code, "53"),    // insufficient resources (too many connections, ...)
		strings.HasPrefix(code, "57P"),   // admin/crash shutdown, cannot connect now
		code == "57014",                  // query_canceled (statement_timeout)
		code == "40001", code == "40P01", // serialization failure, deadlock
		code == "55P03", // lock_not_available
		code == "25006": // read_only_sql_transaction (a standby after failover)
		return true
	}
	return false
}

// actionError maps the (status, detail) result of an operator action to an error (nil for 'ok' and 'noop').
func actionError(status, detail string) error {
	switch status {
	case "ok", "noop":
		return nil
	case "task_not_found":
		return fmt.Errorf("%w: %s", ErrTaskNotFound, detail)
	case "step_not_found":
		return fmt.Errorf("%w: %s", ErrStepNotFound, detail)
	case "invalid_transition":
		return fmt.Errorf("%w: %s", ErrInvalidTransition, detail)
	default:
		return &DatabaseError{Op: "operator action", Err: fmt.Errorf("unexpected status %q (%s)", status, detail)}
	}
}
