package ui

import (
	"context"
	"encoding/json"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// Cluster is what the UI reads from the apiserver, with the credentials of whoever runs it: Tasks, WorkerPools and
// CronTasks as a watch keeps them (KubeCluster), so that a page costs the apiserver nothing.
type Cluster interface {
	// Tasks returns every Task watched (of one namespace or all, as the UI was started).
	Tasks() ([]taskerv1alpha1.Task, error)
	// Task returns one Task; an error that apierrors.IsNotFound recognises when there is none.
	Task(namespace, name string) (*taskerv1alpha1.Task, error)
	// WorkerPools returns every WorkerPool watched; ErrPoolsHidden when the credentials may not list them.
	WorkerPools() ([]taskerv1alpha1.WorkerPool, error)
	// CronTasks returns every CronTask watched; ErrCronTasksHidden when the credentials may not list them.
	CronTasks() ([]taskerv1alpha1.CronTask, error)
}

// Database is what the UI reads from the tasker database for step details (*engine.Engine has these
// methods). The UI has none without a database URL: its pages then show what the Task's status holds and say
// so. The engine's errors are safe to show (they never carry SQL or server internals).
type Database interface {
	GetTask(ctx context.Context, taskID int64) (*engine.TaskState, error)
	History(ctx context.Context, taskID int64, step string) ([]engine.HistoryEntry, error)
	StepInputs(ctx context.Context, taskID int64, step string) (json.RawMessage, error)
}
