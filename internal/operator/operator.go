// Package operator wires the reconcilers and webhooks into a controller-runtime manager. The manager binary and
// the integration tests share it, so tests run exactly what ships.
package operator

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/webhook"
)

// NewScheme returns a scheme with the built-in kinds and tasker.dev/v1alpha1.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	return s
}

// Options select what Setup registers.
type Options struct {
	// EnableWebhooks serves the validating webhooks. Off for `make run` against a cluster that cannot reach the
	// local process.
	EnableWebhooks bool
}

// Setup registers every reconciler (and the webhooks when enabled) with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if err := (&controllers.TaskReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("task controller: %w", err)
	}
	if err := (&controllers.TaskTemplateReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("tasktemplate controller: %w", err)
	}
	if err := (&controllers.WorkerPoolReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("workerpool controller: %w", err)
	}
	if opts.EnableWebhooks {
		return SetupWebhooks(mgr)
	}
	return nil
}

// SetupWebhooks registers only the validating webhooks.
func SetupWebhooks(mgr ctrl.Manager) error {
	if err := webhook.Setup(mgr); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return nil
}
