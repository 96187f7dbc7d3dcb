package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
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
// endpoint). Their series are deleted when the pool is. The pool's namespace is label pool_namespace: a label
// named namespace would clash with the target's own (the operator's namespace) when Prometheus scrapes the
// manager, and come out renamed exported_namespace.
var (
	backlogGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tasker_workerpool_backlog",
		Help: "Messages in the WorkerPool's queues (pgmq queue_length summed over its queues, in flight included), " +
			"at the last successful reading.",
	}, []string{"pool_namespace", "pool"})
	desiredReplicasGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tasker_workerpool_desired_replicas",
		Help: "Replicas the operator wants for the WorkerPool's Deployment.",
	}, []string{"pool_namespace", "pool"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(backlogGauge, desiredReplicasGauge)
}

func deletePoolGauges(namespace, name string) {
	backlogGauge.DeleteLabelValues(namespace, name)
	desiredReplicasGauge.DeleteLabelValues(namespace, name)
}
