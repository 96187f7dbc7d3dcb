package controllers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/poolmetrics"
)

// costUnknown is the deletion cost of a Pod without a fresh worker record: it never registered (still starting,
// or not running the SDK), or stopped reporting (hung, or cut off from the database — its leases will lapse
// anyway). Nothing says it is doing work, so it goes first: below an idle worker (cost 0).
const costUnknown = -1

// deletionCost ranks a Pod for scale-in from its worker's record: the number of steps it is running (0 when
// idle), or costUnknown without a fresh record. The ReplicaSet deletes the lowest costs first.
func deletionCost(w poolmetrics.Worker, found bool) int {
	if !found || !w.Fresh {
		return costUnknown
	}
	return int(min(max(w.InFlight, 0), math.MaxInt32))
}

// markPodsForScaleIn annotates the pool's Pods with controller.kubernetes.io/pod-deletion-cost from the workers'
// records, right before the replicas are lowered, so the ReplicaSet removes idle workers and keeps busy ones.
// Only annotations whose value changes are patched. It returns how many Pods were patched.
func (r *WorkerPoolReconciler) markPodsForScaleIn(ctx context.Context, pool *taskerv1alpha1.WorkerPool, reader PoolMetrics) (int, error) {
	if reader == nil {
		return 0, errors.New("no database configured")
	}
	// Uncached: only scale-in needs Pods, so the operator keeps no cluster-wide Pod informer.
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(pool.Namespace),
		client.MatchingLabels(podLabels(pool))); err != nil {
		return 0, fmt.Errorf("list pods: %w", err)
	}
	live := make([]*corev1.Pod, 0, len(pods.Items))
	ids := make([]string, 0, len(pods.Items))
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp.IsZero() {
			live = append(live, p)
			ids = append(ids, WorkerID(p.Namespace, p.Name))
		}
	}
	if len(live) == 0 {
		return 0, nil
	}
	qctx, cancel := context.WithTimeout(ctx, r.queryTimeout())
	defer cancel()
	workers, err := reader.Workers(qctx, ids, r.workerStaleAfter())
	if err != nil {
		return 0, err
	}
	patched := 0
	for _, p := range live {
		w, found := workers[WorkerID(p.Namespace, p.Name)]
		cost := strconv.Itoa(deletionCost(w, found))
		if p.Annotations[AnnotationPodDeletionCost] == cost {
			continue
		}
		base := p.DeepCopy()
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[AnnotationPodDeletionCost] = cost
		// A merge patch of one annotation: no conflict with the kubelet's status writes.
		if err := r.Patch(ctx, p, client.MergeFrom(base)); err != nil {
			if client.IgnoreNotFound(err) == nil {
				continue // gone meanwhile
			}
			return patched, fmt.Errorf("annotate pod %s: %w", p.Name, err)
		}
		patched++
	}
	return patched, nil
}
