package cli

import (
	"fmt"
	"strings"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// ConcurrencyView is where a Task stands in its concurrency group.
type ConcurrencyView struct {
	Group      string `json:"group"`
	Waiting    bool   `json:"waiting"`
	Ahead      int    `json:"ahead,omitempty"`
	Running    int    `json:"running"`
	MaxRunning int    `json:"maxRunning"`
}

// QueueLimitView is the limits of one of the Task's queues (a Queue resource).
type QueueLimitView struct {
	Queue         string `json:"queue"`
	DatabaseQueue string `json:"databaseQueue,omitempty"`
	MaxRunning    int    `json:"maxRunning,omitempty"`
	RateSteps     int    `json:"rateSteps,omitempty"`
	RatePerSecs   int    `json:"ratePerSeconds,omitempty"`
	Running       int    `json:"running"`
	// Ready is the Queue's Ready condition: whether the limits are in force.
	Ready string `json:"ready,omitempty"`
}

func concurrencyFromStatus(c *taskerv1alpha1.ConcurrencyStatus) *ConcurrencyView {
	if c == nil {
		return nil
	}
	return &ConcurrencyView{Group: c.Group, Waiting: c.Waiting, Ahead: int(c.Ahead), Running: int(c.Running),
		MaxRunning: int(c.MaxRunning)}
}

func concurrencyFromEngine(c *engine.ConcurrencyState, finished bool) *ConcurrencyView {
	if c == nil {
		return nil
	}
	return &ConcurrencyView{Group: c.Group, Waiting: c.Waiting && !finished, Ahead: c.Ahead, Running: c.Running,
		MaxRunning: c.MaxRunning}
}

// AddQueueLimits adds to v the Queues (of the Task's namespace) that limit one of the Task's queues: those named
// in its spec (queue names) or used by its steps (database queue names, in a view from the database).
func AddQueueLimits(v *TaskView, tk *taskerv1alpha1.Task, queues []taskerv1alpha1.Queue) {
	names := map[string]bool{}
	if tk.Spec.Queue != "" {
		names[tk.Spec.Queue] = true
	} else if tk.Spec.TemplateRef == nil {
		names[taskerv1alpha1.DefaultQueue] = true
	}
	for _, s := range tk.Spec.Steps {
		if s.Queue != "" {
			names[s.Queue] = true
		}
	}
	db := map[string]bool{}
	for _, s := range v.Steps {
		if s.Queue != "" {
			db[s.Queue] = true
		}
	}
	for i := range queues {
		q := &queues[i]
		if !names[q.QueueName()] && !db[q.Status.DatabaseQueue] {
			continue
		}
		l := QueueLimitView{Queue: q.QueueName(), DatabaseQueue: q.Status.DatabaseQueue, Running: int(q.Status.Running)}
		if q.Spec.MaxRunning != nil {
			l.MaxRunning = int(*q.Spec.MaxRunning)
		}
		if q.Spec.Rate != nil {
			l.RateSteps, l.RatePerSecs = int(q.Spec.Rate.Steps), max(int(q.Spec.Rate.PerSeconds), 1)
		}
		for _, c := range q.Status.Conditions {
			if c.Type == taskerv1alpha1.QueueConditionReady {
				l.Ready = string(c.Status)
			}
		}
		v.QueueLimits = append(v.QueueLimits, l)
	}
}

// FlowControlLines says, one line each, where the Task stands in its concurrency group and which queue limits
// apply to it (none: no lines).
func FlowControlLines(v TaskView) []string {
	var out []string
	if c := v.Concurrency; c != nil {
		state := "holds a slot"
		if c.Waiting {
			state = fmt.Sprintf("waiting for a slot, %d ahead", c.Ahead)
		}
		out = append(out, fmt.Sprintf("Concurrency group %s: %s (%d of %d running)", c.Group, state, c.Running, c.MaxRunning))
	}
	for _, l := range v.QueueLimits {
		var parts []string
		if l.MaxRunning > 0 {
			parts = append(parts, fmt.Sprintf("at most %d running (%d now)", l.MaxRunning, l.Running))
		}
		if l.RateSteps > 0 {
			parts = append(parts, fmt.Sprintf("%d steps per %ds", l.RateSteps, l.RatePerSecs))
		}
		line := fmt.Sprintf("Queue %s limits: %s", l.Queue, strings.Join(parts, ", "))
		if l.Ready != "True" {
			line += " (not in force: see the Queue's Ready condition)"
		}
		out = append(out, line)
	}
	return out
}
