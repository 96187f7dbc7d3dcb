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
	for i := range spec.Steps {
		if q := spec.Steps[i].Queue; q != "" {
			spec.Steps[i].Queue = scope.DatabaseQueue(spec.Namespace, q)
		}
	}
}
