// Paced status writes: a finished Task, an action's outcome or a recovered database go out at once, progress
// is coalesced.

package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// writeWindow paces the status writes of one Task.
type writeWindow struct {
	last time.Time // last write, or admission
	n    int       // progress writes so far
}

// writeStatus writes status when it changed: at once when urgent, else when the Task's write window allows
// (see DefaultStatusInterval), asking to be called again then.
func (r *TaskReconciler) writeStatus(ctx context.Context, task *taskerv1alpha1.Task, old *taskerv1alpha1.TaskStatus,
	result ctrl.Result, urgent bool) (ctrl.Result, error) {
	setReadyConditions(task)
	if equality.Semantic.DeepEqual(old, &task.Status) {
		return result, nil
	}
	key := types.NamespacedName{Namespace: task.Namespace, Name: task.Name}
	v, _ := r.writes.LoadOrStore(key, &writeWindow{})
	w := v.(*writeWindow)
	if !urgent && !w.last.IsZero() {
		if wait := w.last.Add(r.gapAfter(w.n)).Sub(r.now()); wait > 0 {
			if result.RequeueAfter == 0 || wait < result.RequeueAfter {
				result.RequeueAfter = wait
			}
			return result, nil
		}
	}
	if err := r.Status().Update(ctx, task); err != nil {
		return ctrl.Result{}, err
	}
	statusWrites.Inc()
	r.writes.Store(key, &writeWindow{last: r.now(), n: w.n + 1})
	return result, nil
}

// gapAfter is the shortest time between a Task's n-th progress write and the next one.
func (r *TaskReconciler) gapAfter(n int) time.Duration {
	return min(r.statusInterval()<<min(n, 16), maxStatusGapFactor*r.statusInterval())
}

// statusGap is the current gap between progress writes of the Task key: how often its progress is worth reading.
func (r *TaskReconciler) statusGap(key types.NamespacedName) time.Duration {
	n := 0
	if v, ok := r.writes.Load(key); ok {
		n = v.(*writeWindow).n
	}
	return r.gapAfter(n)
}

func (r *TaskReconciler) statusInterval() time.Duration {
	if r.StatusInterval > 0 {
		return r.StatusInterval
	}
	return DefaultStatusInterval
}

func (r *TaskReconciler) resyncInterval() time.Duration {
	if r.ResyncInterval > 0 {
		return r.ResyncInterval
	}
	return DefaultResyncInterval
}
