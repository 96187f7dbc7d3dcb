// Package controllers holds one reconciler per kind. Reconcilers are thin: they read the custom resource, call
// the engine, and write status; everything about workflows lives in internal/engine.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/webhook"
)

// TaskFinalizer keeps a Task until its workflow is cancelled in the engine.
const TaskFinalizer = "tasker.dev/cancel-in-engine"

// templateNameIndex indexes Tasks by the TaskTemplate they reference.
const templateNameIndex = "spec.templateRef.name"

// Defaults of TaskReconciler.
const (
	// DefaultStatusInterval is the shortest time between two status writes of one Task: however many steps
	// change, the apiserver sees at most about one write per second per Task. While a Task runs, the gap between
	// progress writes doubles after each (1 s, 2 s, 4 s, up to maxStatusGapFactor x the interval), so short Tasks
	// cost one to three writes in all; the final state, actions' outcomes and database outages are written at
	// once.
	DefaultStatusInterval = time.Second
	// maxStatusGapFactor caps the growing gap between progress writes (10 s by default).
	maxStatusGapFactor = 10
	// DefaultResyncInterval re-reads unfinished Tasks from the database even without notifications, in case one
	// was lost (notifications are not delivered while the listener reconnects).
	DefaultResyncInterval = 2 * time.Minute
	// templateRetryInterval is how soon a Task whose TaskTemplate is missing looks again (template creation also
	// triggers it at once).
	templateRetryInterval = 30 * time.Second
)

// Condition reasons of a Task.
const (
	ReasonAdmitted         = "Admitted"
	ReasonTemplateNotFound = "TemplateNotFound"
	ReasonInvalidTemplate  = "InvalidTemplate"
	ReasonInvalidSpec      = "InvalidSpec"
	ReasonReachable        = "Reachable"
	ReasonUnreachable      = "Unreachable"
	ReasonNotReady         = "DatabaseNotReady"
)

// DatabaseGate tells whether the database is ready for use (migrated). The operator's start-up migration
// implements it; nil means always ready.
type DatabaseGate interface {
	// Ready returns nil when ready, else why not (a message safe for users).
	Ready() error
}

// TaskReconciler admits Tasks into the engine and writes their status from the database.
type TaskReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Engine   TaskEngine
	Gate     DatabaseGate
	Recorder events.EventRecorder

	// StatusInterval and ResyncInterval: see DefaultStatusInterval and DefaultResyncInterval.
	StatusInterval time.Duration
	ResyncInterval time.Duration
	// Clock tells the time (status pacing, TTL after finishing, action records). Default: the real clock.
	Clock clock.PassiveClock

	writes  sync.Map // types.NamespacedName -> statusWrites: when the status may next be written
	taskIDs sync.Map // engine task id (int64) -> types.NamespacedName, to route notifications
	ids     sync.Map // types.NamespacedName -> ownTask: the engine task found under the Task's UID
	// dbBackoff spaces the reconciles of a Task while PostgreSQL is unreachable (see afterDatabaseError).
	dbBackoff workqueue.TypedRateLimiter[types.NamespacedName]
	changes   chan event.GenericEvent
}

// writeWindow paces the status writes of one Task.
type writeWindow struct {
	last time.Time // last write, or admission
	n    int       // progress writes so far
}

// +kubebuilder:rbac:groups=tasker.dev,resources=tasks,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks/finalizers,verbs=update
// +kubebuilder:rbac:groups=tasker.dev,resources=tasktemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Task's engine state and status together.
func (r *TaskReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var task taskerv1alpha1.Task
	if err := r.Get(ctx, req.NamespacedName, &task); err != nil {
		if apierrors.IsNotFound(err) {
			r.writes.Delete(req.NamespacedName)
			r.ids.Delete(req.NamespacedName)
			r.dbBackoff.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !task.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &task)
	}
	if !controllerutil.ContainsFinalizer(&task, TaskFinalizer) {
		patch := client.MergeFrom(task.DeepCopy())
		controllerutil.AddFinalizer(&task, TaskFinalizer)
		if err := r.Patch(ctx, &task, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	old := task.Status.DeepCopy()
	status := &task.Status
	status.ObservedGeneration = task.Generation
	if status.Phase == "" {
		status.Phase = taskerv1alpha1.TaskPending
	}

	if err := r.gateError(); err != nil {
		conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, ReasonNotReady, err.Error())
		return r.writeStatus(ctx, &task, old, ctrl.Result{RequeueAfter: 2 * time.Second}, true)
	}

	// Which engine task is this Task's: the one admitted under its UID. status.taskID only records it (whoever may
	// write tasks/status could point it at another namespace's workflow), so it is never trusted, and corrected.
	id, err := r.engineTaskID(ctx, &task)
	if err != nil {
		r.databaseDown(&task, err)
		_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
		return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
	}
	switch {
	case status.TaskID == 0 || status.TaskID == id:
		// Not recorded yet (admission below finds the task again if there is one, and says so), or recorded right.
	case id == 0:
		// Nothing under the UID although the status names a task: this Task's, deleted by retention while the CR
		// lives on (then no task has that id any more: nothing left to report, and nothing to admit again), or
		// another Task's (then this Task is admitted as if the status were empty).
		_, err := r.Engine.GetTask(ctx, status.TaskID)
		switch {
		case errors.Is(err, engine.ErrTaskNotFound):
			log.V(1).Info("task no longer in the database", "taskID", status.TaskID)
			return ctrl.Result{}, nil
		case err != nil:
			r.databaseDown(&task, err)
			_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
			return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
		}
		log.Info("status.taskID named another Task's engine task: ignored", "statusTaskID", status.TaskID)
		status.TaskID = 0
	default:
		log.Info("status.taskID named another Task's engine task: corrected", "statusTaskID", status.TaskID, "taskID", id)
		status.TaskID = id
	}

	// Admission: once, keyed by the UID, so repeats (resyncs, restarts, a lost status write) find the same task.
	if status.TaskID == 0 {
		result, done, err := r.admit(ctx, &task)
		if err != nil || !done {
			if err != nil && r.databaseDown(&task, err) {
				_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
				return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
			}
			if err != nil {
				return ctrl.Result{}, err
			}
			return r.writeStatus(ctx, &task, old, result, true)
		}
	}

	r.taskIDs.Store(status.TaskID, req.NamespacedName)

	// Manual interventions, each once per id.
	actionsRan, err := r.runActions(ctx, &task)
	if err != nil {
		r.databaseDown(&task, err)
		_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
		return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
	}
	if task.Spec.Cancel && !finished(status.Phase) {
		if err := r.Engine.Cancel(ctx, status.TaskID, "spec.cancel set on the Task"); err != nil && !errors.Is(err, engine.ErrTaskNotFound) {
			r.databaseDown(&task, err)
			_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
			return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
		}
	}

	st, err := r.Engine.GetTask(ctx, status.TaskID)
	if err != nil {
		if errors.Is(err, engine.ErrTaskNotFound) {
			// Deleted by retention while the CR lives on: nothing left to report.
			log.V(1).Info("task no longer in the database", "taskID", status.TaskID)
			return ctrl.Result{}, nil
		}
		r.databaseDown(&task, err)
		_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
		return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
	}
	r.dbBackoff.Forget(req.NamespacedName)
	conditions.True(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, ReasonReachable, "")
	applyEngineState(status, st)
	r.setOutcomeConditions(&task, st)

	if old.Phase != status.Phase {
		r.phaseEvents(&task, old.Phase, st)
		if finished(status.Phase) {
			observeFinished(st)
		}
	}
	result := ctrl.Result{}
	if !finished(status.Phase) {
		result.RequeueAfter = r.resyncInterval()
		if status.Phase == taskerv1alpha1.TaskRunning {
			// Workers announce only task-level changes (started, finished, ...): a running Task's step progress
			// is read at the pace its status may be written anyway.
			result.RequeueAfter = min(result.RequeueAfter, r.statusGap(req.NamespacedName))
		}
	} else if ttl := task.Spec.TTLSecondsAfterFinished; ttl != nil && status.CompletedAt != nil {
		expiry := status.CompletedAt.Add(time.Duration(*ttl) * time.Second)
		if wait := expiry.Sub(r.now()); wait > 0 {
			result.RequeueAfter = wait
		} else {
			log.Info("deleting finished Task after ttlSecondsAfterFinished", "ttl", *ttl)
			return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, &task, client.Preconditions{UID: &task.UID}))
		}
	}
	// A finished Task's last status, an action's outcome and a recovered database go out at once; progress is
	// coalesced.
	urgent := actionsRan || finished(status.Phase) != finished(old.Phase) ||
		conditions.IsTrue(status.Conditions, taskerv1alpha1.TaskConditionDatabaseReachable) !=
			conditions.IsTrue(old.Conditions, taskerv1alpha1.TaskConditionDatabaseReachable) && old.TaskID != 0
	return r.writeStatus(ctx, &task, old, result, urgent)
}

func (r *TaskReconciler) gateError() error {
	if r.Engine == nil {
		return errors.New("no database configured: start the manager with --database-url")
	}
	if r.Gate == nil {
		return nil
	}
	return r.Gate.Ready()
}

// admit resolves the steps (inline or from the template) and admits the task. done is false when admission
// cannot proceed yet (a condition says why) and result says when to look again.
func (r *TaskReconciler) admit(ctx context.Context, task *taskerv1alpha1.Task) (ctrl.Result, bool, error) {
	status := &task.Status
	var tmpl *taskerv1alpha1.TaskTemplate
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
	}
	spec, err := engineTaskSpec(task, tmpl)
	if err == nil {
		var adm engine.Admission
		adm, err = r.Engine.Admit(ctx, spec)
		if err == nil {
			status.TaskID = adm.TaskID
			r.ids.Store(client.ObjectKeyFromObject(task), ownTask{uid: task.UID, id: adm.TaskID})
			// Admission opens the first write window: a Task that finishes within it is written once.
			r.writes.LoadOrStore(types.NamespacedName{Namespace: task.Namespace, Name: task.Name}, &writeWindow{last: r.now()})
			msg := fmt.Sprintf("admitted as task %d with %d steps", adm.TaskID, len(spec.Steps))
			if tmpl != nil {
				msg += fmt.Sprintf(" from TaskTemplate %q (generation %d)", tmpl.Name, tmpl.Generation)
			}
			conditions.True(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionAdmitted, ReasonAdmitted, msg)
			conditions.True(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, ReasonReachable, "")
			if adm.Created {
				observeAdmission(task.CreationTimestamp.Time)
				r.event(task, corev1.EventTypeNormal, "Admitted", "Admit", "%s", msg)
			}
			return ctrl.Result{}, true, nil
		}
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

// runActions carries out spec.actions not yet in status.actions. It reports whether any ran.
func (r *TaskReconciler) runActions(ctx context.Context, task *taskerv1alpha1.Task) (bool, error) {
	status := &task.Status
	done := make(map[string]bool, len(status.Actions))
	for _, a := range status.Actions {
		done[a.ID] = true
	}
	ran := false
	for _, a := range task.Spec.Actions {
		if done[a.ID] {
			continue
		}
		var err error
		switch a.Type {
		case taskerv1alpha1.ActionRetry:
			retry := engine.Retry{Reason: a.Reason}
			if a.Inputs != nil {
				retry.Inputs = a.Inputs.Raw
			}
			if retry.Reason == "" {
				retry.Reason = "retried by action " + a.ID
			}
			err = r.Engine.RetryStepWith(ctx, status.TaskID, a.Step, retry)
		case taskerv1alpha1.ActionResolve:
			reason := a.Reason
			if reason == "" {
				reason = "resolved by action " + a.ID
			}
			err = r.Engine.ResolveStep(ctx, status.TaskID, a.Step, reason)
		case taskerv1alpha1.ActionComplete:
			var result []byte
			if a.Result != nil {
				result = a.Result.Raw
			}
			err = r.Engine.CompleteStep(ctx, status.TaskID, a.Step, result)
		default:
			err = fmt.Errorf("%w: unknown action type %q", engine.ErrInvalidArgument, a.Type)
		}
		record := taskerv1alpha1.ActionStatus{ID: a.ID, Outcome: "Done", Time: metav1.NewTime(r.now())}
		switch {
		case err == nil:
			record.Message = fmt.Sprintf("%s of step %q done", a.Type, a.Step)
			r.event(task, corev1.EventTypeNormal, string(a.Type), string(a.Type), "action %s: %s of step %q", a.ID, a.Type, a.Step)
		case errors.Is(err, engine.ErrDatabase):
			return ran, err
		default:
			record.Outcome = "Rejected"
			record.Message = trim(err.Error(), 256)
			r.event(task, corev1.EventTypeWarning, "ActionRejected", string(a.Type), "action %s: %s", a.ID, record.Message)
		}
		status.Actions = append(status.Actions, record)
		ran = true
	}
	// Forget outcomes of actions no longer in the spec, so status stays bounded by spec's 32.
	if len(status.Actions) > 0 {
		inSpec := make(map[string]bool, len(task.Spec.Actions))
		for _, a := range task.Spec.Actions {
			inSpec[a.ID] = true
		}
		kept := status.Actions[:0]
		for _, a := range status.Actions {
			if inSpec[a.ID] {
				kept = append(kept, a)
			}
		}
		status.Actions = kept
	}
	return ran, nil
}

// setOutcomeConditions sets Succeeded / Failed / Cancelled from the phase.
func (r *TaskReconciler) setOutcomeConditions(task *taskerv1alpha1.Task, st *engine.TaskState) {
	status, gen := &task.Status, task.Generation
	set := func(condType string, on bool, reason, msg string) {
		if on {
			conditions.True(&status.Conditions, gen, condType, reason, msg)
		} else if meta := findCondition(status.Conditions, condType); meta != nil {
			conditions.False(&status.Conditions, gen, condType, "Resumed", "the Task is running again")
		}
	}
	set(taskerv1alpha1.TaskConditionSucceeded, status.Phase == taskerv1alpha1.TaskSucceeded, "AllStepsDone",
		fmt.Sprintf("%d steps done", len(st.Steps)))
	set(taskerv1alpha1.TaskConditionFailed, status.Phase == taskerv1alpha1.TaskFailed, "StepFailed", failureMessage(st))
	set(taskerv1alpha1.TaskConditionCancelled, status.Phase == taskerv1alpha1.TaskCancelled, "Cancelled", "the Task was cancelled")
}

// setReadyConditions derives Ready and Stalled (kstatus's summary conditions) from the phase and the other
// conditions, in the one place every status write goes through.
func setReadyConditions(task *taskerv1alpha1.Task) {
	status, gen := &task.Status, task.Generation
	stalled := func(reason, msg string) {
		conditions.False(&status.Conditions, gen, taskerv1alpha1.TaskConditionReady, reason, msg)
		conditions.True(&status.Conditions, gen, taskerv1alpha1.TaskConditionStalled, reason, msg)
	}
	switch status.Phase {
	case taskerv1alpha1.TaskSucceeded:
		conditions.True(&status.Conditions, gen, taskerv1alpha1.TaskConditionReady, "Succeeded",
			fmt.Sprintf("%s steps done", status.Progress))
	case taskerv1alpha1.TaskFailed:
		msg := "a step failed"
		if c := findCondition(status.Conditions, taskerv1alpha1.TaskConditionFailed); c != nil && c.Message != "" {
			msg = c.Message
		}
		stalled("Failed", msg)
	case taskerv1alpha1.TaskCancelled:
		stalled("Cancelled", "the Task was cancelled")
	default:
		reason, msg := "Running", fmt.Sprintf("%s steps done", status.Progress)
		if status.Phase != taskerv1alpha1.TaskRunning {
			reason, msg = "Pending", "waiting to be admitted and for its first step to start"
		}
		if c := findCondition(status.Conditions, taskerv1alpha1.TaskConditionAdmitted); c != nil &&
			c.Status == metav1.ConditionFalse {
			reason, msg = c.Reason, c.Message
		}
		conditions.False(&status.Conditions, gen, taskerv1alpha1.TaskConditionReady, reason, msg)
		if findCondition(status.Conditions, taskerv1alpha1.TaskConditionStalled) != nil {
			conditions.False(&status.Conditions, gen, taskerv1alpha1.TaskConditionStalled, "Resumed",
				"the Task is running again")
		}
	}
}

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// failureMessage names the failed steps and the first one's error.
func failureMessage(st *engine.TaskState) string {
	var names []string
	first := ""
	for i := range st.Steps {
		if st.Steps[i].Phase == engine.StepFailed {
			names = append(names, st.Steps[i].Name)
			if first == "" {
				first = st.Steps[i].LastErrorMessage
			}
		}
	}
	if len(names) == 0 {
		return "the Task failed"
	}
	msg := fmt.Sprintf("step %q failed", names[0])
	if len(names) > 1 {
		msg = fmt.Sprintf("steps %q failed", names)
	}
	if first != "" {
		msg += ": " + trim(first, 512)
	}
	return msg
}

// phaseEvents records Events for a phase change.
func (r *TaskReconciler) phaseEvents(task *taskerv1alpha1.Task, from taskerv1alpha1.TaskPhase, st *engine.TaskState) {
	switch task.Status.Phase {
	case taskerv1alpha1.TaskSucceeded:
		r.event(task, corev1.EventTypeNormal, "Succeeded", "Complete", "all %d steps done", len(st.Steps))
	case taskerv1alpha1.TaskFailed:
		for i := range st.Steps {
			if s := &st.Steps[i]; s.Phase == engine.StepFailed {
				r.event(task, corev1.EventTypeWarning, "StepFailed", "Fail", "step %q failed permanently after %d attempt(s): %s",
					s.Name, s.Attempts, trim(s.LastErrorMessage, 512))
			}
		}
		r.event(task, corev1.EventTypeWarning, "Failed", "Fail", "%s", failureMessage(st))
	case taskerv1alpha1.TaskCancelled:
		r.event(task, corev1.EventTypeNormal, "Cancelled", "Cancel", "the Task was cancelled")
	case taskerv1alpha1.TaskRunning:
		if from == taskerv1alpha1.TaskFailed {
			r.event(task, corev1.EventTypeNormal, "Resumed", "Resume", "the Task is running again")
		}
	}
}

func (r *TaskReconciler) event(task *taskerv1alpha1.Task, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(task, nil, eventType, reason, action, note, args...)
	}
}

// databaseDown records a database failure in the conditions; it reports whether err was one. The cause is
// logged by controller-runtime (the returned error), never put into the status.
func (r *TaskReconciler) databaseDown(task *taskerv1alpha1.Task, err error) bool {
	if !errors.Is(err, engine.ErrDatabase) {
		return false
	}
	msg := "cannot reach PostgreSQL; retrying with backoff"
	if !errors.Is(err, engine.ErrUnavailable) {
		msg = "the database returned an unexpected error; retrying with backoff (details in the operator's log)"
	}
	conditions.False(&task.Status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, ReasonUnreachable, msg)
	return true
}

// Backoff of a Task's reconciles while PostgreSQL is unreachable: 1 s, doubling, at most 30 s.
const (
	dbRetryFirst = time.Second
	dbRetryMax   = 30 * time.Second
)

func newDBBackoff() workqueue.TypedRateLimiter[types.NamespacedName] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](dbRetryFirst, dbRetryMax)
}

// afterDatabaseError ends a reconcile that failed on the database (err; werr is the status write's own error).
// While PostgreSQL is unreachable the Task is requeued on its own backoff instead of returning the error, because
// controller-runtime logs every returned error with a stack trace: every retry of every Task, thousands of lines
// a minute in an outage, for a condition that says nothing new. The outage stays visible in the Tasks'
// DatabaseReachable condition, the upkeep's log (once per outage) and the tasker_database_metrics_up metric;
// when the operator's LISTEN connection comes back, every active Task is reconciled at once. Other errors are
// returned as usual.
func (r *TaskReconciler) afterDatabaseError(ctx context.Context, key types.NamespacedName, err, werr error) (ctrl.Result, error) {
	if werr != nil || !errors.Is(err, engine.ErrUnavailable) {
		return ctrl.Result{}, errors.Join(err, werr)
	}
	wait := r.dbBackoff.When(key)
	logf.FromContext(ctx).V(1).Info("database unreachable; retrying", "in", wait, "error", err.Error())
	return ctrl.Result{RequeueAfter: wait}, nil
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

// finalize cancels the task in the engine, then lets the Task go.
func (r *TaskReconciler) finalize(ctx context.Context, task *taskerv1alpha1.Task) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(task, TaskFinalizer) {
		return ctrl.Result{}, nil
	}
	if err := r.gateError(); err != nil {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	// The engine task under the Task's UID, whatever status.taskID says (admitted but the status write was lost,
	// never admitted, or a status pointing elsewhere).
	taskID, err := r.engineTaskID(ctx, task)
	if err != nil {
		return r.afterDatabaseError(ctx, client.ObjectKeyFromObject(task), err, nil)
	}
	if taskID != 0 {
		if err := r.Engine.Cancel(ctx, taskID, "Task deleted"); err != nil && !errors.Is(err, engine.ErrTaskNotFound) {
			return r.afterDatabaseError(ctx, client.ObjectKeyFromObject(task), err, nil)
		}
	}
	patch := client.MergeFrom(task.DeepCopy())
	controllerutil.RemoveFinalizer(task, TaskFinalizer)
	if err := r.Patch(ctx, task, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.writes.Delete(types.NamespacedName{Namespace: task.Namespace, Name: task.Name})
	r.dbBackoff.Forget(types.NamespacedName{Namespace: task.Namespace, Name: task.Name})
	r.ids.Delete(types.NamespacedName{Namespace: task.Namespace, Name: task.Name})
	r.taskIDs.Delete(taskID)
	return ctrl.Result{}, nil
}

// ownTask is the engine task found under a Task's UID.
type ownTask struct {
	uid types.UID
	id  int64
}

// engineTaskID returns the id of the engine task admitted for task (0: not admitted), found by the Task's UID,
// which is the engine task's external key: status.taskID is never trusted for it. It is looked up once per Task
// (and UID: a Task deleted and created again under the same name is another Task) and remembered.
func (r *TaskReconciler) engineTaskID(ctx context.Context, task *taskerv1alpha1.Task) (int64, error) {
	key := client.ObjectKeyFromObject(task)
	if v, ok := r.ids.Load(key); ok && v.(ownTask).uid == task.UID {
		return v.(ownTask).id, nil
	}
	id, err := r.Engine.TaskIDByKey(ctx, string(task.UID))
	switch {
	case errors.Is(err, engine.ErrTaskNotFound):
		return 0, nil // not admitted yet: not remembered, admission will
	case err != nil:
		return 0, err
	}
	r.ids.Store(key, ownTask{uid: task.UID, id: id})
	return id, nil
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

// TaskChanged queues the Task of an engine task id for reconciliation (the engine's LISTEN callback). Tasks the
// reconciler has not seen yet are picked up by their own events.
func (r *TaskReconciler) TaskChanged(ctx context.Context, taskID int64) {
	v, ok := r.taskIDs.Load(taskID)
	if !ok {
		return
	}
	key := v.(types.NamespacedName)
	select {
	case r.changes <- event.GenericEvent{Object: &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
	case <-ctx.Done():
	}
}

// ResyncActive queues every unfinished Task: after the listener reconnects, notifications may have been lost.
func (r *TaskReconciler) ResyncActive(ctx context.Context) {
	var list taskerv1alpha1.TaskList
	if err := r.List(ctx, &list); err != nil {
		return
	}
	for i := range list.Items {
		if !finished(list.Items[i].Status.Phase) {
			select {
			case r.changes <- event.GenericEvent{Object: &list.Items[i]}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// SetupIndexes registers the cache indexes the controllers query (once per manager).
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	return mgr.GetFieldIndexer().IndexField(ctx, &taskerv1alpha1.Task{}, templateNameIndex, templateNameOf)
}

// templateNameOf is the templateNameIndex of a Task: the TaskTemplate it references, if any.
func templateNameOf(o client.Object) []string {
	if ref := o.(*taskerv1alpha1.Task).Spec.TemplateRef; ref != nil {
		return []string{ref.Name}
	}
	return nil
}

// SetupWithManager registers the reconciler and the channel fed by engine notifications. SetupIndexes must have
// run.
func (r *TaskReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.changes = make(chan event.GenericEvent, 1024)
	r.dbBackoff = newDBBackoff()
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.Task{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			predicate.LabelChangedPredicate{}, deletionPredicate{}))).
		Watches(&taskerv1alpha1.TaskTemplate{}, handler.EnqueueRequestsFromMapFunc(r.tasksWaitingForTemplate)).
		WatchesRawSource(source.Channel(r.changes, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{
			// Reconciles wait on the apiserver and the database, not the CPU.
			MaxConcurrentReconciles: 16,
			// Errors retry from 100 ms up to every 30 s, not controller-runtime's default of 16 min (an unreachable
			// database has its own quiet backoff, afterDatabaseError).
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 30*time.Second),
		}).
		Named("task").
		Complete(r)
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

// deletionPredicate passes updates that set a deletion timestamp (finalizers must run).
type deletionPredicate struct{ predicate.Funcs }

func (deletionPredicate) Update(e event.UpdateEvent) bool {
	return e.ObjectNew.GetDeletionTimestamp() != nil
}

func (r *TaskReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}
