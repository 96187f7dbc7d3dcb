package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// cronTaskTaskName is the name of the Task of a scheduled time: the same for every reconcile, so creating it twice
// is refused by the apiserver (AlreadyExists) instead of running the schedule twice.
func cronTaskTaskName(cronTask string, scheduled time.Time) string {
	return cronTask + "-" + strconv.FormatInt(scheduled.Unix(), 10)
}

// newCronTaskTask builds the Task of a scheduled time, controlled by the CronTask.
func newCronTaskTask(ct *taskerv1alpha1.CronTask, scheduled time.Time, scheme *runtime.Scheme) (*taskerv1alpha1.Task, error) {
	spec := ct.Spec.Task.DeepCopy()
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[taskerv1alpha1.CronTaskLabel] = ct.Name
	task := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{
			Name:        cronTaskTaskName(ct.Name, scheduled),
			Namespace:   ct.Namespace,
			Labels:      labels,
			Annotations: map[string]string{taskerv1alpha1.ScheduledTimeAnnotation: scheduled.UTC().Format(time.RFC3339)},
		},
		Spec: taskerv1alpha1.TaskSpec{
			// The scheduled time's run, whichever Task object carries it: a Task of this time deleted (by the
			// history limits, say) and made again is bound to the run, not run twice.
			IdempotencyKey:          cronTaskTaskName(ct.Name, scheduled),
			Steps:                   spec.Steps,
			TemplateRef:             spec.TemplateRef,
			Queue:                   spec.Queue,
			Context:                 spec.Context,
			Arguments:               spec.Arguments,
			Priority:                spec.Priority,
			TTLSecondsAfterFinished: spec.TTLSecondsAfterFinished,
			Concurrency:             spec.Concurrency,
			Outputs:                 spec.Outputs,
		},
	}
	if err := controllerutil.SetControllerReference(ct, task, scheme); err != nil {
		return nil, err
	}
	return task, nil
}

// ownedTasks are a CronTask's Tasks by state, each list oldest scheduled time first.
type ownedTasks struct {
	active, succeeded, failed []*taskerv1alpha1.Task
	names                     map[string]bool
}

func (r *CronTaskReconciler) ownedTasks(ctx context.Context, ct *taskerv1alpha1.CronTask) (ownedTasks, error) {
	var list taskerv1alpha1.TaskList
	if err := r.List(ctx, &list, client.InNamespace(ct.Namespace), client.MatchingLabels{taskerv1alpha1.CronTaskLabel: ct.Name}); err != nil {
		return ownedTasks{}, err
	}
	out := ownedTasks{names: map[string]bool{}}
	for i := range list.Items {
		t := &list.Items[i]
		if !metav1.IsControlledBy(t, ct) {
			continue // a Task labelled by hand, or left by an earlier CronTask of the same name
		}
		out.names[t.Name] = true
		switch t.Status.Phase {
		case taskerv1alpha1.TaskSucceeded:
			out.succeeded = append(out.succeeded, t)
		case taskerv1alpha1.TaskFailed, taskerv1alpha1.TaskCancelled:
			out.failed = append(out.failed, t)
		default:
			out.active = append(out.active, t)
		}
	}
	for _, l := range [][]*taskerv1alpha1.Task{out.active, out.succeeded, out.failed} {
		slices.SortFunc(l, func(a, b *taskerv1alpha1.Task) int { return scheduledTime(a).Compare(scheduledTime(b)) })
	}
	return out, nil
}

// scheduledTime is the time a Task was created for (its creation time if the annotation was removed).
func scheduledTime(t *taskerv1alpha1.Task) time.Time {
	if at, err := time.Parse(time.RFC3339, t.Annotations[taskerv1alpha1.ScheduledTimeAnnotation]); err == nil {
		return at
	}
	return t.CreationTimestamp.Time
}

// recordSucceeded moves status.lastSuccessfulTime to the latest completion of a succeeded Task.
func recordSucceeded(status *taskerv1alpha1.CronTaskStatus, succeeded []*taskerv1alpha1.Task) {
	for _, t := range succeeded {
		if done := t.Status.CompletedAt; done != nil && (status.LastSuccessfulTime == nil || done.After(status.LastSuccessfulTime.Time)) {
			status.LastSuccessfulTime = done.DeepCopy()
		}
	}
}

func setActive(status *taskerv1alpha1.CronTaskStatus, active []*taskerv1alpha1.Task) {
	status.Active = nil
	for _, t := range active {
		status.Active = append(status.Active, taskerv1alpha1.CronTaskActive{Name: t.Name, ScheduledTime: metav1.Time{Time: scheduledTime(t)}})
	}
	status.ActiveCount = int32(len(status.Active))
}

// pruneHistory deletes the oldest finished Tasks beyond the history limits.
func (r *CronTaskReconciler) pruneHistory(ctx context.Context, ct *taskerv1alpha1.CronTask, owned ownedTasks) error {
	for _, h := range []struct {
		tasks []*taskerv1alpha1.Task
		limit *int32
	}{{owned.succeeded, ct.Spec.SuccessfulTasksHistoryLimit}, {owned.failed, ct.Spec.FailedTasksHistoryLimit}} {
		if h.limit == nil {
			continue
		}
		for _, t := range h.tasks[:max(0, len(h.tasks)-int(*h.limit))] {
			if t.DeletionTimestamp != nil {
				continue
			}
			if err := r.Delete(ctx, t, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete Task %s (history limit): %w", t.Name, err)
			}
		}
	}
	return nil
}
