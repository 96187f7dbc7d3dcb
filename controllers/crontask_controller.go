package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/cronschedule"
)

// Condition reasons of a CronTask.
const (
	ReasonScheduled       = "Scheduled"
	ReasonSuspended       = "Suspended"
	ReasonInvalidSchedule = "InvalidSchedule"
)

// CronTaskReconciler creates a CronTask's Tasks at its scheduled times, applies its concurrency policy and
// history limits, and reports its runs.
//
// It keeps no state between reconciles: a Task's name is derived from its scheduled time, so a reconciler that
// restarts (or a new leader) after creating a Task but before recording it in status creates nothing twice.
type CronTaskReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	// Clock tells the time the schedule is compared with. Default: the real clock.
	Clock clock.PassiveClock
}

// +kubebuilder:rbac:groups=tasker.dev,resources=crontasks,verbs=get;list;watch
// +kubebuilder:rbac:groups=tasker.dev,resources=crontasks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=crontasks/finalizers,verbs=update
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs the CronTask's due schedule, if any, and asks to be called again at the next one.
func (r *CronTaskReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	res, err := r.reconcile(ctx, req)
	if apierrors.IsConflict(err) {
		// The CronTask or a Task changed since the cache was read: decide again from the new state, shortly. A
		// Task created meanwhile is found by its name, so nothing runs twice.
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
	}
	return res, err
}

func (r *CronTaskReconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ct taskerv1alpha1.CronTask
	if err := r.Get(ctx, req.NamespacedName, &ct); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if ct.DeletionTimestamp != nil {
		return ctrl.Result{}, nil // its Tasks go with it (owner references)
	}
	now := r.now()
	old := ct.Status.DeepCopy()
	owned, err := r.ownedTasks(ctx, &ct)
	if err != nil {
		return ctrl.Result{}, err
	}
	ct.Status.ObservedGeneration = ct.Generation
	recordSucceeded(&ct.Status, owned.succeeded)
	if err := r.pruneHistory(ctx, &ct, owned); err != nil {
		return ctrl.Result{}, err
	}
	setActive(&ct.Status, owned.active)

	sched, err := cronschedule.Parse(ct.Spec.Schedule, ct.Spec.TimeZone)
	if err != nil {
		ct.Status.NextScheduleTime = nil
		conditions.False(&ct.Status.Conditions, ct.Generation, taskerv1alpha1.CronTaskConditionReady, ReasonInvalidSchedule, err.Error())
		conditions.True(&ct.Status.Conditions, ct.Generation, taskerv1alpha1.CronTaskConditionStalled, ReasonInvalidSchedule, err.Error())
		return ctrl.Result{}, r.writeStatus(ctx, &ct, old)
	}
	conditions.Remove(&ct.Status.Conditions, taskerv1alpha1.CronTaskConditionStalled)
	if ct.Spec.Suspend != nil && *ct.Spec.Suspend {
		ct.Status.NextScheduleTime = nil
		conditions.True(&ct.Status.Conditions, ct.Generation, taskerv1alpha1.CronTaskConditionReady, ReasonSuspended,
			"suspended: no Tasks are created")
		return ctrl.Result{}, r.writeStatus(ctx, &ct, old)
	}
	if err := r.runDue(ctx, &ct, sched, owned, now); err != nil {
		return ctrl.Result{}, err
	}
	next := sched.Next(now)
	if next.IsZero() {
		ct.Status.NextScheduleTime = nil
		conditions.True(&ct.Status.Conditions, ct.Generation, taskerv1alpha1.CronTaskConditionReady, ReasonScheduled,
			"the schedule has no time in the next five years")
		return ctrl.Result{}, r.writeStatus(ctx, &ct, old)
	}
	ct.Status.NextScheduleTime = &metav1.Time{Time: next}
	conditions.True(&ct.Status.Conditions, ct.Generation, taskerv1alpha1.CronTaskConditionReady, ReasonScheduled,
		"next run at "+next.Format(time.RFC3339))
	if err := r.writeStatus(ctx, &ct, old); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: next.Sub(now)}, nil
}

// runDue creates the Task of the most recent scheduled time not yet run, if there is one and the starting
// deadline and concurrency policy allow it.
func (r *CronTaskReconciler) runDue(ctx context.Context, ct *taskerv1alpha1.CronTask, sched *cronschedule.Schedule, owned ownedTasks, now time.Time) error {
	earliest := ct.CreationTimestamp.Time
	if last := ct.Status.LastScheduleTime; last != nil {
		earliest = last.Time
	}
	scheduled, missedOthers, ok := sched.MostRecent(earliest, now)
	if !ok {
		return nil
	}
	if d := ct.Spec.StartingDeadlineSeconds; d != nil && scheduled.Add(time.Duration(*d)*time.Second).Before(now) {
		r.event(ct, corev1.EventTypeWarning, "MissedSchedule", "Skip",
			"missed the run of %s: more than startingDeadlineSeconds (%d) late", scheduled.Format(time.RFC3339), *d)
		return nil
	}
	name := cronTaskTaskName(ct.Name, scheduled)
	if owned.names[name] {
		// Created by an earlier reconcile whose status write did not happen (restart, conflict): only record it.
		ct.Status.LastScheduleTime = &metav1.Time{Time: scheduled}
		return nil
	}
	if missedOthers {
		r.event(ct, corev1.EventTypeWarning, "MissedSchedule", "Skip",
			"missed scheduled times before %s (the operator was down, or the CronTask suspended or forbidden to run): only that one runs",
			scheduled.Format(time.RFC3339))
	}
	if len(owned.active) > 0 {
		switch ct.Spec.ConcurrencyPolicy {
		case taskerv1alpha1.ConcurrencyForbid:
			r.event(ct, corev1.EventTypeNormal, "AlreadyActive", "Skip",
				"not running %s: %d Task(s) still unfinished and concurrencyPolicy is Forbid", scheduled.Format(time.RFC3339), len(owned.active))
			return nil
		case taskerv1alpha1.ConcurrencyReplace:
			if err := r.cancelActive(ctx, ct, owned.active); err != nil {
				return err
			}
		}
	}
	task, err := newCronTaskTask(ct, scheduled, r.Scheme)
	if err != nil {
		return err
	}
	if err := r.Create(ctx, task); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("create Task %s: %w", task.Name, err)
	} else if err == nil {
		r.event(ct, corev1.EventTypeNormal, "Created", "Create", "created Task %s for %s", task.Name, scheduled.Format(time.RFC3339))
	}
	ct.Status.LastScheduleTime = &metav1.Time{Time: scheduled}
	ct.Status.Active = append(ct.Status.Active, taskerv1alpha1.CronTaskActive{Name: task.Name, ScheduledTime: metav1.Time{Time: scheduled}})
	ct.Status.ActiveCount = int32(len(ct.Status.Active))
	return nil
}

// cancelActive sets spec.cancel on the unfinished Tasks: the Task controller cancels them in the engine.
func (r *CronTaskReconciler) cancelActive(ctx context.Context, ct *taskerv1alpha1.CronTask, active []*taskerv1alpha1.Task) error {
	for _, t := range active {
		if t.Spec.Cancel {
			continue
		}
		patch := client.MergeFrom(t.DeepCopy())
		t.Spec.Cancel = true
		if err := r.Patch(ctx, t, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("cancel Task %s: %w", t.Name, err)
		}
		r.event(ct, corev1.EventTypeNormal, "Replaced", "Cancel", "cancelled Task %s (concurrencyPolicy Replace)", t.Name)
	}
	return nil
}

func (r *CronTaskReconciler) writeStatus(ctx context.Context, ct *taskerv1alpha1.CronTask, old *taskerv1alpha1.CronTaskStatus) error {
	if apiequality.Semantic.DeepEqual(old, &ct.Status) {
		return nil
	}
	return r.Status().Update(ctx, ct)
}

func (r *CronTaskReconciler) now() time.Time {
	if r.Clock == nil {
		return time.Now()
	}
	return r.Clock.Now()
}

func (r *CronTaskReconciler) event(ct *taskerv1alpha1.CronTask, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(ct, nil, eventType, reason, action, note, args...)
	}
}

// SetupWithManager registers the reconciler. Its Tasks wake it when they are created, finish or are deleted; their
// progress writes do not.
func (r *CronTaskReconciler) SetupWithManager(mgr ctrl.Manager) error {
	phaseChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*taskerv1alpha1.Task), e.ObjectNew.(*taskerv1alpha1.Task)
		return o.Status.Phase != n.Status.Phase || (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil)
	}}
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.CronTask{}).
		Owns(&taskerv1alpha1.Task{}, builder.WithPredicates(phaseChanged)).
		Named("crontask").
		Complete(r)
}
