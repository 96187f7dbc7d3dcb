package controllers

import (
	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// databaseQueues are the database queues a pool's workers take steps from (TASKER_QUEUES) and its backlog is read
// from: each of spec.queues as its namespace's queue (or the queue itself where an administrator shared it), then
// the queues from before queues were namespaced that still hold steps of the pool's namespace (st.legacy).
func (r *WorkerPoolReconciler) databaseQueues(pool *taskerv1alpha1.WorkerPool, st *poolState) []string {
	out := r.Queues.DatabaseQueues(pool.Namespace, pool.Spec.Queues)
	if st != nil {
		out = append(out, st.legacy...)
	}
	return out
}

// legacyCandidates are the pool's queues under their own names where that is not the queue the pool now serves:
// where steps admitted before queues were namespaced may still wait.
func (r *WorkerPoolReconciler) legacyCandidates(pool *taskerv1alpha1.WorkerPool) []string {
	var out []string
	for _, q := range pool.Spec.Queues {
		if !r.Queues.Shared(pool.Namespace, q) {
			out = append(out, q)
		}
	}
	return out
}
