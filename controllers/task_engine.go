package controllers

import (
	"context"
	"encoding/json"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// TaskEngine is what the Task controller asks of the workflow engine: admission, the state of a task, and the
// operator's actions. *engine.Engine implements it against PostgreSQL; the controller's unit tests use a fake.
// Every method returns engine's sentinel errors (engine.ErrTaskNotFound, engine.ErrDatabase, ...) as documented
// there.
type TaskEngine interface {
	// Admit admits a task, idempotently on spec.ExternalKey (the Task's UID).
	Admit(ctx context.Context, spec engine.TaskSpec) (engine.Admission, error)
	// TaskIDByKey finds the task admitted under an external key.
	TaskIDByKey(ctx context.Context, externalKey string) (int64, error)
	// TaskIDByIdempotencyKey finds the task admitted in a namespace under an idempotency key.
	TaskIDByIdempotencyKey(ctx context.Context, namespace, key string) (int64, error)
	// GetTask reads a task's state with its steps.
	GetTask(ctx context.Context, taskID int64) (*engine.TaskState, error)
	// Cancel stops a task.
	Cancel(ctx context.Context, taskID int64, reason string) error
	// RetryStepWith, ResolveStep and CompleteStep are the actions of a Task's spec.actions.
	RetryStepWith(ctx context.Context, taskID int64, step string, r engine.Retry) error
	ResolveStep(ctx context.Context, taskID int64, step, reason string) error
	CompleteStep(ctx context.Context, taskID int64, step string, result json.RawMessage) error
	// Signal is the Signal action: the task's steps waiting for signal continue, with payload as their result.
	Signal(ctx context.Context, taskID int64, signal string, payload json.RawMessage, reason string) error
}

var _ TaskEngine = (*engine.Engine)(nil)
