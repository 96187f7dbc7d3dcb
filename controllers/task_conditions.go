// A Task's conditions and Events from its engine state.

package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

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
		if w := concurrencyWait(status.Concurrency); w != "" {
			reason, msg = "WaitingForConcurrencyGroup", w
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
