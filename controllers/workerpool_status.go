package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/scaling"
)

// setPoolCondition sets one condition of the pool, always stamped with the generation it describes (so a reader
// can tell a condition about the current spec from a stale one), and the transition time only when the status
// flips.
func setPoolCondition(pool *taskerv1alpha1.WorkerPool, typ string, status metav1.ConditionStatus, reason,
	message string) {
	meta.SetStatusCondition(&pool.Status.Conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: pool.Generation,
	})
}

// Reasons of the WorkerPool conditions set by the controller (besides scaling.Reason and scaling.Limit values).
const (
	reasonDeploymentReconciled  = "DeploymentReconciled"
	reasonDeploymentConflict    = "DeploymentConflict"
	reasonDeploymentFailed      = "DeploymentFailed"
	reasonBacklogRead           = "BacklogRead"
	reasonDatabaseUnavailable   = "DatabaseUnavailable"
	reasonDatabaseNotConfigured = "DatabaseNotConfigured"
	reasonMetricsUnavailable    = "MetricsUnavailable"
	reasonActive                = "BacklogPresent"
	reasonIdle                  = "Idle"
	reasonWithinRange           = "DesiredWithinRange"
)

// Prometheus gauges per pool, registered with controller-runtime's registry (served on the manager's metrics
// endpoint) by Collectors. Their series are deleted when the pool is. The pool's namespace is label
// pool_namespace: a label named namespace would clash with the target's own (the operator's namespace) when
// Prometheus scrapes the manager, and come out renamed exported_namespace.
var (
	backlogGauge = newPoolGauge("tasker_workerpool_backlog", "Messages in the WorkerPool's queues (pgmq "+
		"queue_length summed over its queues, in flight included), at the last successful reading.")
	desiredReplicasGauge = newPoolGauge("tasker_workerpool_desired_replicas",
		"Replicas the operator wants for the WorkerPool's Deployment.")
	replicasGauge = newPoolGauge("tasker_workerpool_replicas",
		"Pods of the WorkerPool's Deployment (its status.replicas), as last seen by the operator.")
	readyReplicasGauge = newPoolGauge("tasker_workerpool_ready_replicas",
		"Ready Pods of the WorkerPool's Deployment (its status.readyReplicas), as last seen by the operator.")
	maxReplicasGauge = newPoolGauge("tasker_workerpool_max_replicas",
		"The WorkerPool's spec.scaling.maxReplicas (its default when unset): the most replicas the scaler asks for.")

	poolGauges = []*prometheus.GaugeVec{backlogGauge, desiredReplicasGauge, replicasGauge, readyReplicasGauge,
		maxReplicasGauge}
)

func newPoolGauge(name, help string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"pool_namespace", "pool"})
}

// setPoolGauges exports the pool's replica counts (the backlog is set by each successful reading).
func setPoolGauges(pool *taskerv1alpha1.WorkerPool, spec scaling.Spec) {
	ns, name := pool.Namespace, pool.Name
	desiredReplicasGauge.WithLabelValues(ns, name).Set(float64(pool.Status.DesiredReplicas))
	replicasGauge.WithLabelValues(ns, name).Set(float64(pool.Status.CurrentReplicas))
	readyReplicasGauge.WithLabelValues(ns, name).Set(float64(pool.Status.ReadyReplicas))
	maxReplicasGauge.WithLabelValues(ns, name).Set(float64(spec.MaxReplicas))
}

func deletePoolGauges(namespace, name string) {
	for _, g := range poolGauges {
		g.DeleteLabelValues(namespace, name)
	}
}
