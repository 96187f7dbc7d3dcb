// What the Task controller does while PostgreSQL is unreachable.

package controllers

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// databaseDown records a database failure in the conditions; it reports whether err was one. The cause is
// logged by controller-runtime (the returned error), never put into the status.
func (r *TaskReconciler) databaseDown(task *taskerv1alpha1.Task, err error) bool {
	if !errors.Is(err, engine.ErrDatabase) {
		return false
	}
	msg := "cannot reach PostgreSQL; retrying with backoff"
	if !errors.Is(err, engine.ErrUnavailable) {
		msg = "the database returned an unexpected error; retrying with backoff (details in the operator's log)"
	}
	conditions.False(&task.Status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, ReasonUnreachable, msg)
	return true
}

func newDBBackoff() workqueue.TypedRateLimiter[types.NamespacedName] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](dbRetryFirst, dbRetryMax)
}

// afterDatabaseError ends a reconcile that failed on the database (err; werr is the status write's own error).
// While PostgreSQL is unreachable the Task is requeued on its own backoff instead of returning the error, because
// controller-runtime logs every returned error with a stack trace: every retry of every Task, thousands of lines
// a minute in an outage, for a condition that says nothing new. The outage stays visible in the Tasks'
// DatabaseReachable condition, the upkeep's log (once per outage) and the tasker_database_metrics_up metric;
// when the operator's LISTEN connection comes back, every active Task is reconciled at once. Other errors are
// returned as usual.
func (r *TaskReconciler) afterDatabaseError(ctx context.Context, key types.NamespacedName, err, werr error) (ctrl.Result, error) {
	if werr != nil || !errors.Is(err, engine.ErrUnavailable) {
		return ctrl.Result{}, errors.Join(err, werr)
	}
	wait := r.dbBackoff.When(key)
	logf.FromContext(ctx).V(1).Info("database unreachable; retrying", "in", wait, "error", err.Error())
	return ctrl.Result{RequeueAfter: wait}, nil
}
