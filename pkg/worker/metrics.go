package worker

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's Prometheus collectors.
type metrics struct {
	claimed   *prometheus.CounterVec   // queue
	succeeded *prometheus.CounterVec   // queue, handler
	failed    *prometheus.CounterVec   // queue, handler
	retried   *prometheus.CounterVec   // queue, handler
	released  *prometheus.CounterVec   // queue
	lost      *prometheus.CounterVec   // queue, handler
	duration  *prometheus.HistogramVec // handler
	inFlight  prometheus.Gauge
	calls     *prometheus.HistogramVec // call

	// The calls' series, looked up once: the claim and complete paths observe one per round trip.
	claimCalls, completeCalls, failCalls prometheus.Observer
}

// handlerBuckets span sub-millisecond no-ops to multi-minute jobs.
var handlerBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}

// callBuckets span a round trip on a quiet local database to calls held up by locks, a busy server or retries of
// the connection (30 s is the claim's own timeout).
var callBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Values of tasker_worker_protocol_call_duration_seconds' call label.
const (
	callClaim    = "claim"
	callComplete = "complete"
	callFail     = "fail"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		claimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_worker_steps_claimed_total",
			Help: "Steps claimed by the worker, by queue.",
		}, []string{"queue"}),
		succeeded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_worker_steps_succeeded_total",
			Help: "Steps whose handler succeeded and whose result the engine accepted.",
		}, []string{"queue", "handler"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_worker_steps_failed_total",
			Help: "Failed attempts after which the step failed for good (permanent error or attempts used up).",
		}, []string{"queue", "handler"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_worker_steps_retried_total",
			Help: "Failed attempts that the engine will retry.",
		}, []string{"queue", "handler"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_worker_steps_released_total",
			Help: "Steps given back during a shutdown (not started, or cancelled at the drain timeout).",
		}, []string{"queue"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_worker_steps_lost_total",
			Help: "Attempts whose outcome was discarded: the step was stopped or the lease lost while the handler ran.",
		}, []string{"queue", "handler"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tasker_worker_handler_duration_seconds",
			Help:    "Time handlers ran, by handler.",
			Buckets: handlerBuckets,
		}, []string{"handler"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tasker_worker_in_flight",
			Help: "Handlers running now.",
		}),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_worker_protocol_call_duration_seconds",
			Help: "Duration of the worker's calls to the database's step protocol, each attempt: claim (a batch), " +
				"complete (a batch of successes, with the claim of the steps they made ready) and fail.",
			Buckets: callBuckets,
		}, []string{"call"}),
	}
	if reg != nil {
		if err := m.register(reg); err != nil {
			return nil, err
		}
	}
	m.claimCalls = m.calls.WithLabelValues(callClaim)
	m.completeCalls = m.calls.WithLabelValues(callComplete)
	m.failCalls = m.calls.WithLabelValues(callFail)
	return m, nil
}

// register registers the collectors with reg, or takes the identical ones registered before.
func (m *metrics) register(reg prometheus.Registerer) error {
	var err error
	m.claimed, err = register(reg, m.claimed)
	if err != nil {
		return err
	}
	if m.succeeded, err = register(reg, m.succeeded); err != nil {
		return err
	}
	if m.failed, err = register(reg, m.failed); err != nil {
		return err
	}
	if m.retried, err = register(reg, m.retried); err != nil {
		return err
	}
	if m.released, err = register(reg, m.released); err != nil {
		return err
	}
	if m.lost, err = register(reg, m.lost); err != nil {
		return err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return err
	}
	if m.inFlight, err = register(reg, m.inFlight); err != nil {
		return err
	}
	m.calls, err = register(reg, m.calls)
	return err
}

// observeSince observes the time since start on o.
func observeSince(o prometheus.Observer, start time.Time) { o.Observe(time.Since(start).Seconds()) }

// register registers c, or returns the identical collector registered before (several workers in one process
// share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
