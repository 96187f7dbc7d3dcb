package webhook

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-tasker-dev-v1alpha1-task,mutating=false,failurePolicy=fail,sideEffects=None,groups=tasker.dev,resources=tasks,verbs=create;update,versions=v1alpha1,name=vtask.tasker.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-tasker-dev-v1alpha1-crontask,mutating=false,failurePolicy=fail,sideEffects=None,groups=tasker.dev,resources=crontasks,verbs=create;update,versions=v1alpha1,name=vcrontask.tasker.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-tasker-dev-v1alpha1-tasktemplate,mutating=false,failurePolicy=fail,sideEffects=None,groups=tasker.dev,resources=tasktemplates,verbs=create;update,versions=v1alpha1,name=vtasktemplate.tasker.dev,admissionReviewVersions=v1

// Setup registers the validating webhooks of Task, TaskTemplate and CronTask with the manager. conditions checks the steps'
// conditions (nil: they are left to the engine's admission, with a warning). Tasks' and CronTasks' arguments are
// checked against their TaskTemplate, read through the manager's client.
func Setup(mgr ctrl.Manager, conditions ConditionChecker) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &taskerv1alpha1.Task{}).
		WithValidator(TaskValidator{Conditions: conditions, Templates: mgr.GetClient()}).Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &taskerv1alpha1.TaskTemplate{}).
		WithValidator(TaskTemplateValidator{Conditions: conditions, Templates: mgr.GetClient()}).Complete(); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &taskerv1alpha1.CronTask{}).
		WithValidator(CronTaskValidator{Conditions: conditions, Templates: mgr.GetClient()}).Complete()
}

// TaskValidator rejects Tasks whose step graph is invalid, or whose arguments do not fit their template.
type TaskValidator struct {
	// Conditions checks the steps' conditions; nil leaves them to the engine.
	Conditions ConditionChecker
	// Templates reads the TaskTemplate a Task references, to check its arguments when it is created; nil leaves
	// them to the operator's admission.
	Templates client.Reader
}

var _ admission.Validator[*taskerv1alpha1.Task] = TaskValidator{}

func (v TaskValidator) ValidateCreate(ctx context.Context, task *taskerv1alpha1.Task) (admission.Warnings, error) {
	warnings, err := v.validate(ctx, task)
	if err != nil {
		return warnings, err
	}
	// The arguments, on create only: the template may change its parameters later, which must not block updates
	// (actions, cancel) of Tasks admitted already.
	argErrs, argWarnings := checkArguments(ctx, v.Templates, task.Namespace, field.NewPath("spec"), task.Spec.TemplateRef,
		task.Spec.Arguments, task.Spec.Context)
	childErrs, childWarnings := checkChildren(ctx, v.Templates, task.Namespace, "", field.NewPath("spec", "steps"), task.Spec.Steps)
	return append(append(warnings, argWarnings...), childWarnings...), invalid(task.Name, "Task", append(argErrs, childErrs...))
}

func (v TaskValidator) ValidateUpdate(ctx context.Context, _, task *taskerv1alpha1.Task) (admission.Warnings, error) {
	// Objects being deleted only lose finalizers; never block that on their content.
	if task.DeletionTimestamp != nil {
		return nil, nil
	}
	return v.validate(ctx, task)
}

func (v TaskValidator) validate(ctx context.Context, task *taskerv1alpha1.Task) (admission.Warnings, error) {
	errs := ValidateTask(task)
	condErrs, warnings := checkConditions(ctx, v.Conditions, field.NewPath("spec", "steps"), task.Spec.Steps)
	keyErrs, keyWarnings := checkConcurrencyKey(ctx, v.Conditions, field.NewPath("spec", "concurrency"), task.Spec.Concurrency)
	return append(warnings, keyWarnings...), invalid(task.Name, "Task", append(append(errs, condErrs...), keyErrs...))
}

func (TaskValidator) ValidateDelete(context.Context, *taskerv1alpha1.Task) (admission.Warnings, error) {
	return nil, nil
}

// TaskTemplateValidator rejects TaskTemplates whose step graph is invalid, or that run themselves as child
// workflows.
type TaskTemplateValidator struct {
	// Conditions checks the steps' conditions; nil leaves them to the engine.
	Conditions ConditionChecker
	// Templates reads the TaskTemplates the steps run as child workflows; nil leaves them to admission.
	Templates client.Reader
}

var _ admission.Validator[*taskerv1alpha1.TaskTemplate] = TaskTemplateValidator{}

func (v TaskTemplateValidator) ValidateCreate(ctx context.Context, t *taskerv1alpha1.TaskTemplate) (admission.Warnings, error) {
	return v.validate(ctx, t)
}

func (v TaskTemplateValidator) ValidateUpdate(ctx context.Context, _, t *taskerv1alpha1.TaskTemplate) (admission.Warnings, error) {
	if t.DeletionTimestamp != nil {
		return nil, nil
	}
	return v.validate(ctx, t)
}

func (v TaskTemplateValidator) validate(ctx context.Context, t *taskerv1alpha1.TaskTemplate) (admission.Warnings, error) {
	errs := ValidateTaskTemplate(t)
	condErrs, warnings := checkConditions(ctx, v.Conditions, field.NewPath("spec", "steps"), t.Spec.Steps)
	keyErrs, keyWarnings := checkConcurrencyKey(ctx, v.Conditions, field.NewPath("spec", "concurrency"), t.Spec.Concurrency)
	childErrs, childWarnings := checkChildren(ctx, v.Templates, t.Namespace, t.Name, field.NewPath("spec", "steps"), t.Spec.Steps)
	errs = append(append(append(errs, condErrs...), keyErrs...), childErrs...)
	return append(append(warnings, keyWarnings...), childWarnings...), invalid(t.Name, "TaskTemplate", errs)
}

func (TaskTemplateValidator) ValidateDelete(context.Context, *taskerv1alpha1.TaskTemplate) (admission.Warnings, error) {
	return nil, nil
}

// CronTaskValidator rejects CronTasks whose schedule, time zone or step graph is invalid, or whose Task's arguments
// do not fit its template.
type CronTaskValidator struct {
	// Conditions checks the steps' conditions; nil leaves them to the engine.
	Conditions ConditionChecker
	// Templates reads the TaskTemplate the CronTask's Task references; nil leaves its arguments to admission.
	Templates client.Reader
}

var _ admission.Validator[*taskerv1alpha1.CronTask] = CronTaskValidator{}

func (v CronTaskValidator) ValidateCreate(ctx context.Context, ct *taskerv1alpha1.CronTask) (admission.Warnings, error) {
	return v.validate(ctx, ct)
}

func (v CronTaskValidator) ValidateUpdate(ctx context.Context, _, ct *taskerv1alpha1.CronTask) (admission.Warnings, error) {
	if ct.DeletionTimestamp != nil {
		return nil, nil
	}
	return v.validate(ctx, ct)
}

func (v CronTaskValidator) validate(ctx context.Context, ct *taskerv1alpha1.CronTask) (admission.Warnings, error) {
	errs := ValidateCronTask(ct)
	condErrs, warnings := checkConditions(ctx, v.Conditions, field.NewPath("spec", "task", "steps"), ct.Spec.Task.Steps)
	argErrs, argWarnings := checkArguments(ctx, v.Templates, ct.Namespace, field.NewPath("spec", "task"), ct.Spec.Task.TemplateRef,
		ct.Spec.Task.Arguments, ct.Spec.Task.Context)
	keyErrs, keyWarnings := checkConcurrencyKey(ctx, v.Conditions, field.NewPath("spec", "task", "concurrency"),
		ct.Spec.Task.Concurrency)
	childErrs, childWarnings := checkChildren(ctx, v.Templates, ct.Namespace, "", field.NewPath("spec", "task", "steps"),
		ct.Spec.Task.Steps)
	errs = append(append(append(append(errs, condErrs...), argErrs...), keyErrs...), childErrs...)
	return append(append(append(warnings, argWarnings...), keyWarnings...), childWarnings...), invalid(ct.Name, "CronTask", errs)
}

func (CronTaskValidator) ValidateDelete(context.Context, *taskerv1alpha1.CronTask) (admission.Warnings, error) {
	return nil, nil
}

func invalid(name, kind string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(taskerv1alpha1.GroupVersion.WithKind(kind).GroupKind(), name, errs)
}
