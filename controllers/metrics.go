package controllers

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

var (
	statusWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tasker_task_status_writes_total",
		Help: "Status updates of Task resources written by the operator.",
	})
	admissionLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tasker_task_admission_seconds",
		Help:    "Time from a Task's creation in the apiserver to its admission into the database.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms .. 41 s
	})
	stepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tasker_step_duration_seconds",
		Help:    "Duration of steps' last attempts (start to finish), observed when their Task finishes, by outcome.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 12), // 1 ms .. ~70 min
	}, []string{"outcome"})
	tasksFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tasker_tasks_finished_total",
		Help: "Tasks this operator saw finish, by phase.",
	}, []string{"phase"})
)

func init() {
	metrics.Registry.MustRegister(Collectors()...)
}

// Collectors returns the collectors of the controllers' metrics, which init registers with controller-runtime's
// registry (served on the manager's metrics endpoint).
func Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{statusWrites, admissionLatency, stepDuration, tasksFinished}
	for _, g := range poolGauges {
		cs = append(cs, g)
	}
	return cs
}

// StatusWrites is the metric counting Task status writes (read by tests).
func StatusWrites() prometheus.Counter { return statusWrites }

// observeFinished records a finished task's step durations and outcome.
func observeFinished(st *engine.TaskState) {
	tasksFinished.WithLabelValues(string(st.Phase)).Inc()
	for i := range st.Steps {
		s := &st.Steps[i]
		if s.StartedAt == nil || s.FinishedAt == nil {
			continue
		}
		stepDuration.WithLabelValues(string(s.Phase)).Observe(s.FinishedAt.Sub(*s.StartedAt).Seconds())
	}
}

// observeAdmission records how long a Task took from its creation to its admission at now (the reconciler's
// clock).
func observeAdmission(created, now time.Time) {
	admissionLatency.Observe(now.Sub(created).Seconds())
}
