// Admission of a Task into the engine, and which engine task is a Task's.

package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/templates"
	"github.com/tasker-operator/tasker-operator/internal/webhook"
)

// admit resolves the steps (inline or from the template) and admits the task. done is false when admission
// cannot proceed yet (a condition says why) and result says when to look again.
func (r *TaskReconciler) admit(ctx context.Context, eng TaskEngine, task *taskerv1alpha1.Task) (ctrl.Result, bool, error) {
	status := &task.Status
	var (
		tmpl *taskerv1alpha1.TaskTemplate
		spec engine.TaskSpec
	)
	if ref := task.Spec.TemplateRef; ref != nil {
		tmpl = &taskerv1alpha1.TaskTemplate{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: task.Namespace, Name: ref.Name}, tmpl); err != nil {
			if !apierrors.IsNotFound(err) {
				return ctrl.Result{}, false, err
			}
			conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonTemplateNotFound,
				fmt.Sprintf("TaskTemplate %q not found in namespace %q; the Task is admitted when it appears", ref.Name, task.Namespace))
			return ctrl.Result{RequeueAfter: templateRetryInterval}, false, nil
		}
		if errs := webhook.ValidateTaskTemplate(tmpl); len(errs) > 0 {
			conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonInvalidTemplate,
				fmt.Sprintf("TaskTemplate %q is invalid: %s", ref.Name, errs.ToAggregate().Error()))
			return ctrl.Result{RequeueAfter: templateRetryInterval}, false, nil
		}
		if pin := ref.Generation; pin != nil && *pin != tmpl.Generation {
			msg := fmt.Sprintf("spec.templateRef.generation pins generation %d of TaskTemplate %q, which is at generation %d",
				*pin, ref.Name, tmpl.Generation)
			if *pin < tmpl.Generation { // generations only grow: it will never be admitted
				conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted,
					ReasonTemplateGeneration, msg+"; a template's generation never goes back")
				status.Phase = taskerv1alpha1.TaskFailed
				return ctrl.Result{}, false, nil
			}
			conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted,
				ReasonTemplateGeneration, msg+"; the Task is admitted when the template reaches it")
			return ctrl.Result{RequeueAfter: templateRetryInterval}, false, nil
		}
	}
	steps, root := task.Spec.Steps, ""
	if tmpl != nil {
		steps, root = tmpl.Spec.Steps, tmpl.Name
	}
	children, err := r.childTemplates(ctx, task.Namespace, root, steps)
	var notFound *templates.NotFoundError
	switch {
	case errors.As(err, &notFound):
		conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonTemplateNotFound,
			fmt.Sprintf("%s in namespace %q; the Task is admitted when it appears", notFound.Error(), task.Namespace))
		return ctrl.Result{RequeueAfter: templateRetryInterval}, false, nil
	case errors.As(err, new(*childTemplateInvalid)):
		conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonInvalidTemplate,
			err.Error())
		return ctrl.Result{RequeueAfter: templateRetryInterval}, false, nil
	case err != nil && !errors.Is(err, templates.ErrInvalid):
		return ctrl.Result{}, false, err
	case err != nil:
		err = fmt.Errorf("%w: %w", engine.ErrInvalidSpec, err) // a cycle, or too deep: refused below
	default:
		spec, err = engineTaskSpec(task, tmpl, children)
	}
	if err == nil {
		scopeQueues(&spec, r.Queues)
		spec.TraceContext = taskTrace(ctx)
		var adm engine.Admission
		adm, err = eng.Admit(ctx, spec)
		if err == nil {
			status.TaskID = adm.TaskID
			r.ids.Store(client.ObjectKeyFromObject(task), ownTask{uid: task.UID, id: adm.TaskID})
			// Admission opens the first write window: a Task that finishes within it is written once.
			r.writes.LoadOrStore(types.NamespacedName{Namespace: task.Namespace, Name: task.Name}, &writeWindow{last: r.now()})
			msg := fmt.Sprintf("admitted as task %d with %d steps", adm.TaskID, len(spec.Steps))
			if !adm.Created && task.Spec.IdempotencyKey != "" {
				msg = fmt.Sprintf("bound to task %d, the run of idempotency key %q (admitted before)", adm.TaskID,
					task.Spec.IdempotencyKey)
			}
			if tmpl != nil {
				status.Template = templateOrigin(tmpl)
				msg += fmt.Sprintf(" from TaskTemplate %q (generation %d, %s)", tmpl.Name, tmpl.Generation, status.Template.Hash)
			}
			conditions.True(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonAdmitted, msg)
			conditions.True(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, ReasonReachable, "")
			if adm.Created {
				observeAdmission(task.CreationTimestamp.Time, r.now())
				r.event(task, corev1.EventTypeNormal, "Admitted", "Admit", "%s", msg)
			} else if task.Spec.IdempotencyKey != "" {
				r.event(task, corev1.EventTypeNormal, "Bound", "Admit", "%s", msg)
			}
			return ctrl.Result{}, true, nil
		}
	}
	if errors.Is(err, errCRDPredatesDefaults) {
		// Only the CRD upgrade fixes it, and a Task refused meanwhile is admitted afterwards: wait, and say why.
		conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonCRDOutdated, err.Error())
		return ctrl.Result{RequeueAfter: templateRetryInterval}, false, nil
	}
	if errors.Is(err, engine.ErrInvalidSpec) || errors.Is(err, engine.ErrInvalidArgument) {
		// The webhook checks the same rules, so this is a template edited into something the engine refuses, or a
		// Task created while the webhook was off. Nothing will change it: report and stop.
		conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonInvalidSpec, err.Error())
		status.Phase = taskerv1alpha1.TaskFailed
		return ctrl.Result{}, false, nil
	}
	return ctrl.Result{}, false, err
}

// childTemplateInvalid is a TaskTemplate run as a child workflow that fails the webhook's checks (edited while the
// webhook was off): the Task waits for it to be fixed, as for its own template.
type childTemplateInvalid struct {
	name string
	errs field.ErrorList
}

func (e *childTemplateInvalid) Error() string {
	return fmt.Sprintf("TaskTemplate %q (run as a child workflow) is invalid: %s", e.name, e.errs.ToAggregate())
}

// childTemplates reads the TaskTemplates that steps (of root, "" for a Task's inline steps) run as child
// workflows, recursively (templates.Resolve), each checked as the webhook checks a template.
func (r *TaskReconciler) childTemplates(ctx context.Context, namespace, root string,
	steps []taskerv1alpha1.StepSpec) (map[string]*taskerv1alpha1.TaskTemplate, error) {
	get := func(ctx context.Context, name string) (*taskerv1alpha1.TaskTemplate, error) {
		t := &taskerv1alpha1.TaskTemplate{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, t); err != nil {
			return nil, err
		}
		if errs := webhook.ValidateTaskTemplate(t); len(errs) > 0 {
			return nil, &childTemplateInvalid{name: name, errs: errs}
		}
		return t, nil
	}
	return templates.Resolve(ctx, get, apierrors.IsNotFound, root, steps)
}

// templateOrigin identifies the version of tmpl a Task is admitted from: its generation, and a hash of its spec.
func templateOrigin(tmpl *taskerv1alpha1.TaskTemplate) *taskerv1alpha1.TemplateOrigin {
	spec, _ := json.Marshal(tmpl.Spec) // a struct of JSON-able fields: cannot fail
	sum := sha256.Sum256(spec)
	return &taskerv1alpha1.TemplateOrigin{Name: tmpl.Name, Generation: tmpl.Generation,
		Hash: "sha256:" + hex.EncodeToString(sum[:8])}
}

// ownTask is the engine task found under a Task's UID.
type ownTask struct {
	uid types.UID
	id  int64
}

// engineTaskID returns the id of the engine task admitted for task (0: not admitted), found by the Task's UID,
// which is the engine task's external key, or, for a Task with an idempotency key, by that key in its namespace
// (the run may have been admitted by an earlier Task object): status.taskID is never trusted for it. It is looked
// up once per Task (and UID: a Task deleted and created again under the same name is another Task) and remembered.
func (r *TaskReconciler) engineTaskID(ctx context.Context, eng TaskEngine, task *taskerv1alpha1.Task) (int64, error) {
	key := client.ObjectKeyFromObject(task)
	if v, ok := r.ids.Load(key); ok && v.(ownTask).uid == task.UID {
		return v.(ownTask).id, nil
	}
	var (
		id  int64
		err error
	)
	if k := task.Spec.IdempotencyKey; k != "" {
		id, err = eng.TaskIDByIdempotencyKey(ctx, task.Namespace, k)
	} else {
		id, err = eng.TaskIDByKey(ctx, string(task.UID))
	}
	switch {
	case errors.Is(err, engine.ErrTaskNotFound):
		return 0, nil // not admitted yet: not remembered, admission will
	case err != nil:
		return 0, err
	}
	r.ids.Store(key, ownTask{uid: task.UID, id: id})
	return id, nil
}
