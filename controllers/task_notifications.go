// What queues a Task besides its own events: engine notifications, resyncs, its template appearing.

package controllers

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// TaskChanged queues the Task of an engine task id of a database for reconciliation (the engine's LISTEN
// callback). Tasks the reconciler has not seen yet are picked up by their own events.
func (r *TaskReconciler) TaskChanged(ctx context.Context, database string, taskID int64) {
	v, ok := r.taskIDs.Load(engineTask{database, taskID})
	if !ok {
		return
	}
	key := v.(types.NamespacedName)
	select {
	case r.changes <- event.GenericEvent{Object: &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
	case <-ctx.Done():
	}
}

// ResyncActive queues every unfinished Task of a database (and those not admitted anywhere yet): after the
// database's listener reconnects, notifications may have been lost.
func (r *TaskReconciler) ResyncActive(ctx context.Context, database string) {
	var list taskerv1alpha1.TaskList
	if err := r.List(ctx, &list); err != nil {
		return
	}
	for i := range list.Items {
		if db := list.Items[i].Status.Database; db != "" && db != database {
			continue
		}
		if !finished(list.Items[i].Status.Phase) {
			select {
			case r.changes <- event.GenericEvent{Object: &list.Items[i]}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// tasksWaitingForTemplate maps a TaskTemplate to the Tasks that reference it and are not admitted yet.
func (r *TaskReconciler) tasksWaitingForTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	var list taskerv1alpha1.TaskList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{templateNameIndex: o.GetName()}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Status.TaskID == 0 {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}
