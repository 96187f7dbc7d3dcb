package webhook

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-tasker-dev-v1alpha1-task,mutating=false,failurePolicy=fail,sideEffects=None,groups=tasker.dev,resources=tasks,verbs=create;update,versions=v1alpha1,name=vtask.tasker.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-tasker-dev-v1alpha1-tasktemplate,mutating=false,failurePolicy=fail,sideEffects=None,groups=tasker.dev,resources=tasktemplates,verbs=create;update,versions=v1alpha1,name=vtasktemplate.tasker.dev,admissionReviewVersions=v1

// Setup registers the validating webhooks of Task and TaskTemplate with the manager.
func Setup(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &taskerv1alpha1.Task{}).WithValidator(TaskValidator{}).Complete(); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &taskerv1alpha1.TaskTemplate{}).WithValidator(TaskTemplateValidator{}).Complete()
}

// TaskValidator rejects Tasks whose step graph is invalid.
type TaskValidator struct{}

var _ admission.Validator[*taskerv1alpha1.Task] = TaskValidator{}

func (TaskValidator) ValidateCreate(_ context.Context, task *taskerv1alpha1.Task) (admission.Warnings, error) {
	return nil, invalid(task.Name, "Task", ValidateTask(task))
}

func (TaskValidator) ValidateUpdate(_ context.Context, _, task *taskerv1alpha1.Task) (admission.Warnings, error) {
	// Objects being deleted only lose finalizers; never block that on their content.
	if task.DeletionTimestamp != nil {
		return nil, nil
	}
	return nil, invalid(task.Name, "Task", ValidateTask(task))
}

func (TaskValidator) ValidateDelete(context.Context, *taskerv1alpha1.Task) (admission.Warnings, error) {
	return nil, nil
}

// TaskTemplateValidator rejects TaskTemplates whose step graph is invalid.
type TaskTemplateValidator struct{}

var _ admission.Validator[*taskerv1alpha1.TaskTemplate] = TaskTemplateValidator{}

func (TaskTemplateValidator) ValidateCreate(_ context.Context, t *taskerv1alpha1.TaskTemplate) (admission.Warnings, error) {
	return nil, invalid(t.Name, "TaskTemplate", ValidateTaskTemplate(t))
}

func (TaskTemplateValidator) ValidateUpdate(_ context.Context, _, t *taskerv1alpha1.TaskTemplate) (admission.Warnings, error) {
	if t.DeletionTimestamp != nil {
		return nil, nil
	}
	return nil, invalid(t.Name, "TaskTemplate", ValidateTaskTemplate(t))
}

func (TaskTemplateValidator) ValidateDelete(context.Context, *taskerv1alpha1.TaskTemplate) (admission.Warnings, error) {
	return nil, nil
}

func invalid(name, kind string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(taskerv1alpha1.GroupVersion.WithKind(kind).GroupKind(), name, errs)
}
