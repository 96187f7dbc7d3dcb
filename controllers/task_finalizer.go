// The finalizer: a deleted Task cancels its engine task.

package controllers

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// finalize cancels the task in the engine, then lets the Task go.
func (r *TaskReconciler) finalize(ctx context.Context, task *taskerv1alpha1.Task) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(task, TaskFinalizer) {
		return ctrl.Result{}, nil
	}
	db, err := r.taskDatabase(ctx, task)
	switch {
	case errors.Is(err, ErrNoDatabase):
		// Its database is no longer configured (nothing the operator can cancel), or it never had one (its
		// database is recorded before it is admitted: nothing was).
		if task.Status.Database != "" {
			logf.FromContext(ctx).Info("Task deleted while its database is not configured; not cancelled there",
				"database", task.Status.Database)
		}
		return r.removeFinalizer(ctx, task, 0)
	case err != nil:
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	// The engine task under the Task's UID, whatever status.taskID says (admitted but the status write was lost,
	// never admitted, or a status pointing elsewhere).
	taskID, err := r.engineTaskID(ctx, db.Tasks, task)
	if err != nil {
		return r.afterDatabaseError(ctx, client.ObjectKeyFromObject(task), err, nil)
	}
	if taskID != 0 {
		if err := db.Tasks.Cancel(ctx, taskID, "Task deleted"); err != nil && !errors.Is(err, engine.ErrTaskNotFound) {
			return r.afterDatabaseError(ctx, client.ObjectKeyFromObject(task), err, nil)
		}
	}
	return r.removeFinalizer(ctx, task, taskID)
}

// removeFinalizer lets the Task go and forgets it.
func (r *TaskReconciler) removeFinalizer(ctx context.Context, task *taskerv1alpha1.Task, taskID int64) (ctrl.Result, error) {
	patch := client.MergeFrom(task.DeepCopy())
	controllerutil.RemoveFinalizer(task, TaskFinalizer)
	if err := r.Patch(ctx, task, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.writes.Delete(types.NamespacedName{Namespace: task.Namespace, Name: task.Name})
	r.dbBackoff.Forget(types.NamespacedName{Namespace: task.Namespace, Name: task.Name})
	r.ids.Delete(types.NamespacedName{Namespace: task.Namespace, Name: task.Name})
	r.taskIDs.Delete(engineTask{task.Status.Database, taskID})
	return ctrl.Result{}, nil
}
