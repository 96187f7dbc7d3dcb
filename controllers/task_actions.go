// The operator's actions of a Task (spec.actions), each run once.

package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// runActions carries out spec.actions not yet in status.actions. It reports whether any ran.
func (r *TaskReconciler) runActions(ctx context.Context, eng TaskEngine, task *taskerv1alpha1.Task) (bool, error) {
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
		// Carried out once even when this status write is lost and the next reconcile sees the action as new.
		ctx := engine.WithAction(ctx, a.ID)
		switch a.Type {
		case taskerv1alpha1.ActionRetry:
			retry := engine.Retry{Reason: a.Reason}
			if a.Inputs != nil {
				retry.Inputs = a.Inputs.Raw
			}
			if retry.Reason == "" {
				retry.Reason = "retried by action " + a.ID
			}
			err = eng.RetryStepWith(ctx, status.TaskID, a.Step, retry)
		case taskerv1alpha1.ActionResolve:
			reason := a.Reason
			if reason == "" {
				reason = "resolved by action " + a.ID
			}
			err = eng.ResolveStep(ctx, status.TaskID, a.Step, reason)
		case taskerv1alpha1.ActionComplete:
			var result []byte
			if a.Result != nil {
				result = a.Result.Raw
			}
			err = eng.CompleteStep(ctx, status.TaskID, a.Step, result)
		case taskerv1alpha1.ActionSignal:
			var payload []byte
			if a.Result != nil {
				payload = a.Result.Raw
			}
			reason := a.Reason
			if reason == "" {
				reason = "sent by action " + a.ID
			}
			err = eng.Signal(ctx, status.TaskID, a.Signal, payload, reason)
		default:
			err = fmt.Errorf("%w: unknown action type %q", engine.ErrInvalidArgument, a.Type)
		}
		record := taskerv1alpha1.ActionStatus{ID: a.ID, Outcome: "Done", Time: metav1.NewTime(r.now())}
		switch {
		case errors.Is(err, engine.ErrActionDone):
			// Its outcome was not recorded here (a status write lost to a conflict): it was, in the database.
			record.Message = "carried out before (the status write that recorded it was lost)"
		case err == nil:
			record.Message = fmt.Sprintf("%s of step %q done", a.Type, a.Step)
			if a.Type == taskerv1alpha1.ActionSignal {
				record.Message = fmt.Sprintf("signal %q sent", a.Signal)
			}
			r.event(task, corev1.EventTypeNormal, string(a.Type), string(a.Type), "action %s: %s", a.ID, record.Message)
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
