// Package stepcounts turns the engine's counts of steps by state into the API's StepCounts, for the Task
// controller's status and taskerctl's views alike.
package stepcounts

import (
	"fmt"
	"strings"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// Of counts total steps (or a map step's instances) whose states are counted in c.
func Of(total int, c map[engine.StepPhase]int) taskerv1alpha1.StepCounts {
	return taskerv1alpha1.StepCounts{
		Total:     int32(total),
		Pending:   int32(c[engine.StepPending]),
		Enqueued:  int32(c[engine.StepEnqueued]),
		Running:   int32(c[engine.StepRunning]),
		Retrying:  int32(c[engine.StepRetrying]),
		Succeeded: int32(c[engine.StepSucceeded]),
		Failed:    int32(c[engine.StepFailed]),
		Cancelled: int32(c[engine.StepCancelled]),
		Skipped:   int32(c[engine.StepSkipped]),
		Resolved:  int32(c[engine.StepResolved]),
		Omitted:   int32(c[engine.StepOmitted]),
		Waiting:   int32(c[engine.StepWaiting]),
		Mapping:   int32(c[engine.StepMapping]),
	}
}

// Map returns the counts of a map step's instances, or nil when the step is not an expanded map step.
func Map(m *engine.MapState) *taskerv1alpha1.StepCounts {
	if m == nil {
		return nil
	}
	c := Of(m.Items, m.Counts)
	return &c
}

// Line says what counts hold in one line, the states with none left out, in the order of progress: "10000
// items: 9000 succeeded, 8 running, 992 enqueued".
func Line(c taskerv1alpha1.StepCounts) string {
	return line(c, "item")
}

// StepsLine is Line for a child workflow's steps: "4 steps: 3 succeeded, 1 running".
func StepsLine(c taskerv1alpha1.StepCounts) string {
	return line(c, "step")
}

func line(c taskerv1alpha1.StepCounts, noun string) string {
	var parts []string
	for _, p := range []struct {
		n    int32
		name string
	}{
		{c.Succeeded, "succeeded"}, {c.Resolved, "resolved"}, {c.Running, "running"}, {c.Retrying, "retrying"},
		{c.Enqueued, "enqueued"}, {c.Pending, "pending"}, {c.Waiting, "waiting"}, {c.Mapping, "mapping"},
		{c.Failed, "failed"}, {c.Cancelled, "cancelled"}, {c.Skipped, "skipped"}, {c.Omitted, "omitted"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	out := fmt.Sprintf("%d %ss", c.Total, noun)
	if c.Total == 1 {
		out = "1 " + noun
	}
	if len(parts) > 0 {
		out += ": " + strings.Join(parts, ", ")
	}
	return out
}
