// Package controllers holds one reconciler per kind. Reconcilers are thin: they read the custom resource, call
// the engine, and write status; everything about workflows lives in internal/engine.
package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// TaskReconciler reconciles Tasks into the engine.
type TaskReconciler struct {
	client.Client
	Scheme *runtime.Scheme
}

// +kubebuilder:rbac:groups=tasker.dev,resources=tasks,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks/finalizers,verbs=update

// Reconcile brings one Task's engine state and status together.
func (r *TaskReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var task taskerv1alpha1.Task
	if err := r.Get(ctx, req.NamespacedName, &task); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	logf.FromContext(ctx).V(1).Info("observed Task", "generation", task.Generation)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler.
func (r *TaskReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.Task{}).
		Named("task").
		Complete(r)
}
