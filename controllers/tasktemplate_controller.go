package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/webhook"
)

// TaskTemplateReconciler reports whether TaskTemplates are usable and by how many Tasks.
type TaskTemplateReconciler struct {
	client.Client
	Scheme *runtime.Scheme
}

// +kubebuilder:rbac:groups=tasker.dev,resources=tasktemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=tasker.dev,resources=tasktemplates/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks,verbs=get;list;watch

// Reconcile refreshes one TaskTemplate's status: Ready when its graph is valid, and the number of Tasks using it.
func (r *TaskTemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var tmpl taskerv1alpha1.TaskTemplate
	if err := r.Get(ctx, req.NamespacedName, &tmpl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var tasks taskerv1alpha1.TaskList
	if err := r.List(ctx, &tasks, client.InNamespace(tmpl.Namespace), client.MatchingFields{templateNameIndex: tmpl.Name}); err != nil {
		return ctrl.Result{}, err
	}
	old := tmpl.Status.DeepCopy()
	tmpl.Status.ObservedGeneration = tmpl.Generation
	tmpl.Status.Steps = int32(len(tmpl.Spec.Steps))
	tmpl.Status.UsedBy = int32(len(tasks.Items))
	if errs := webhook.ValidateTaskTemplate(&tmpl); len(errs) > 0 {
		conditions.False(&tmpl.Status.Conditions, tmpl.Generation, taskerv1alpha1.TaskTemplateConditionReady, "Invalid",
			errs.ToAggregate().Error())
	} else {
		conditions.True(&tmpl.Status.Conditions, tmpl.Generation, taskerv1alpha1.TaskTemplateConditionReady, "Valid",
			fmt.Sprintf("%d steps; used by %d Task(s)", len(tmpl.Spec.Steps), len(tasks.Items)))
	}
	if equalTemplateStatus(old, &tmpl.Status) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Status().Update(ctx, &tmpl)
}

func equalTemplateStatus(a, b *taskerv1alpha1.TaskTemplateStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Steps != b.Steps || a.UsedBy != b.UsedBy || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

// SetupWithManager registers the reconciler; Task changes re-count their template's users.
func (r *TaskTemplateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.TaskTemplate{}).
		// templateRef and steps are immutable: only creations and deletions of Tasks change a template's count
		// (a Task uses a template by templateRef, or as a child workflow of one of its inline steps).
		Watches(&taskerv1alpha1.Task{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			var reqs []reconcile.Request
			for _, name := range templateNameOf(o) {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}})
			}
			return reqs
		}), builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		Named("tasktemplate").
		Complete(r)
}
