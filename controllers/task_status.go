package controllers

import (
	"fmt"
	"strconv"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/stepcounts"
)

// maxOutputBytes bounds status.outputs: larger outputs are left out (the database has them: taskerctl describe).
const maxOutputBytes = 16 * 1024

// maxStepMessage bounds a step summary's error message (the CRD allows 256 characters).
const maxStepMessage = 256

// phaseOf maps the engine's task state to the API's phase.
func phaseOf(p engine.TaskPhase) taskerv1alpha1.TaskPhase {
	switch p {
	case engine.TaskRunning:
		return taskerv1alpha1.TaskRunning
	case engine.TaskSucceeded:
		return taskerv1alpha1.TaskSucceeded
	case engine.TaskFailed:
		return taskerv1alpha1.TaskFailed
	case engine.TaskCancelled:
		return taskerv1alpha1.TaskCancelled
	default:
		return taskerv1alpha1.TaskPending
	}
}

// applyEngineState writes the engine's view of a task into status: phase, progress, counts, the first
// MaxStepSummaries steps and the times. Conditions and actions are left to the caller. The result is bounded
// whatever the number of steps.
func applyEngineState(status *taskerv1alpha1.TaskStatus, st *engine.TaskState) {
	status.TaskID = st.ID
	status.Phase = phaseOf(st.Phase)
	status.StepCounts = stepcounts.Of(len(st.Steps), st.Counts)
	status.Progress = strconv.Itoa(st.Done()) + "/" + strconv.Itoa(len(st.Steps))
	n := min(len(st.Steps), taskerv1alpha1.MaxStepSummaries)
	summaries := make([]taskerv1alpha1.StepSummary, n)
	for i := range n {
		s := &st.Steps[i]
		summaries[i] = taskerv1alpha1.StepSummary{
			Name:          s.Name,
			State:         string(s.Phase),
			Attempts:      int32(s.Attempts),
			StartedAt:     metaTime(s.StartedAt),
			FinishedAt:    metaTime(s.FinishedAt),
			Message:       trim(s.LastErrorMessage, maxStepMessage),
			NextAttemptAt: metaTime(waitingUntil(s)),
		}
		summaries[i].Map = stepcounts.Map(s.Map)
		if c := s.Child; c != nil {
			summaries[i].Child = &taskerv1alpha1.ChildSummary{Template: c.Template, Steps: stepcounts.Of(c.Steps, c.Counts)}
		}
	}
	status.Steps = summaries
	status.Outputs = nil
	if len(st.Outputs) > 0 && len(st.Outputs) <= maxOutputBytes {
		status.Outputs = &apiextensionsv1.JSON{Raw: st.Outputs}
	}
	status.StartedAt = metaTime(st.StartedAt)
	status.CompletedAt = metaTime(st.CompletedAt)
	status.Concurrency = nil
	if c := st.Concurrency; c != nil {
		status.Concurrency = &taskerv1alpha1.ConcurrencyStatus{Group: c.Group, Waiting: c.Waiting && !st.Phase.Finished(),
			Ahead: int32(c.Ahead), Running: int32(c.Running), MaxRunning: int32(c.MaxRunning)}
	}
}

// concurrencyWait says what a Task waiting for its concurrency group waits for ("" when it is not waiting).
func concurrencyWait(c *taskerv1alpha1.ConcurrencyStatus) string {
	if c == nil || !c.Waiting {
		return ""
	}
	return fmt.Sprintf("waiting for concurrency group %s (%d ahead; %d of %d running)", c.Group, c.Ahead, c.Running,
		c.MaxRunning)
}

// metaTime converts to the API's second-precision time, so that an unchanged time compares equal after a
// round trip through the apiserver.
// waitingUntil is when a step that waits for its time (a delayed enqueued step, a retrying one) becomes claimable,
// or when a waiting step's wait times out; nil for the others (a finished step keeps no next attempt in its
// status).
func waitingUntil(s *engine.StepState) *time.Time {
	if s.Phase != engine.StepEnqueued && s.Phase != engine.StepRetrying && s.Phase != engine.StepWaiting {
		return nil
	}
	return s.NextAttemptAt
}

func metaTime(t *time.Time) *metav1.Time {
	if t == nil {
		return nil
	}
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// trim shortens s to at most n bytes, on a rune boundary, marking the cut.
func trim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !runeStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }

// finished reports whether a phase is terminal for the CR (ttl and events apply).
func finished(p taskerv1alpha1.TaskPhase) bool {
	return p == taskerv1alpha1.TaskSucceeded || p == taskerv1alpha1.TaskFailed || p == taskerv1alpha1.TaskCancelled
}
