package controllers

import (
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// scopeQueues replaces the queue names of a Task's engine spec by its namespace's database queues (see
// queuescope): a Task feeds its own namespace's queues, and shared queues only where an administrator shared them.
func scopeQueues(spec *engine.TaskSpec, scope queuescope.Scope) {
	if spec.Queue != "" {
		spec.Queue = scope.DatabaseQueue(spec.Namespace, spec.Queue)
	}
	scopeStepQueues(spec.Namespace, spec.Steps, scope)
}

// scopeStepQueues scopes the queues of steps, and of their child workflows' steps, at any depth.
func scopeStepQueues(namespace string, steps []engine.StepSpec, scope queuescope.Scope) {
	for i := range steps {
		if q := steps[i].Queue; q != "" {
			steps[i].Queue = scope.DatabaseQueue(namespace, q)
		}
		if c := steps[i].Child; c != nil {
			if c.Queue != "" {
				c.Queue = scope.DatabaseQueue(namespace, c.Queue)
			}
			scopeStepQueues(namespace, c.Steps, scope)
		}
	}
}
