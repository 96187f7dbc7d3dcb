package operator

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

// metricsMaxAge is how long the database figures are reused: scrapes never cost more than one round of
// queries per interval, however many Prometheus servers scrape.
const metricsMaxAge = 10 * time.Second

var (
	tasksDesc = prometheus.NewDesc("tasker_tasks", "Tasks in the database (within their retention) by phase.",
		[]string{"phase"}, nil)
	stepsDesc = prometheus.NewDesc("tasker_steps", "Steps in the database (within their tasks' retention) by state.",
		[]string{"state"}, nil)
	backlogDesc = prometheus.NewDesc("tasker_queue_backlog", "Messages in a queue, in flight included (pgmq queue_length).",
		[]string{"queue"}, nil)
	visibleDesc = prometheus.NewDesc("tasker_queue_visible", "Messages in a queue that a worker could claim now.",
		[]string{"queue"}, nil)
	ageDesc = prometheus.NewDesc("tasker_queue_oldest_message_age_seconds", "Age of the oldest message in a queue (0 when empty).",
		[]string{"queue"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("tasker_database_metrics_up", "1 when the last read of the database figures succeeded.",
		nil, nil)
)

// Values of tasker_upkeep_runs_total's result label.
const (
	upkeepSucceeded = "succeeded"
	upkeepFailed    = "failed"
)

// upkeepRuns counts the leader's maintenance runs. Both results are exported from the start (at 0, also on the
// replicas that are not the leader), so that rate() sees the first failure.
var upkeepRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tasker_upkeep_runs_total",
	Help: "Runs of the engine's maintenance (step timeouts, lost messages, retention) on the leader, by result.",
}, []string{"result"})

func init() {
	upkeepRuns.WithLabelValues(upkeepSucceeded)
	upkeepRuns.WithLabelValues(upkeepFailed)
	metrics.Registry.MustRegister(upkeepRuns)
}

// dbCollector exports the database's task, step and queue figures.
type dbCollector struct {
	db *Database

	mu      sync.Mutex
	at      time.Time
	counts  engine.Counts
	queues  []pgmq.Metrics
	lastErr error
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{tasksDesc, stepsDesc, backlogDesc, visibleDesc, ageDesc, scrapeErrorDesc} {
		ch <- d
	}
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > metricsMaxAge {
		c.refresh()
	}
	up := 1.0
	if c.lastErr != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, up)
	for phase, n := range c.counts.Tasks {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), string(phase))
	}
	for state, n := range c.counts.Steps {
		ch <- prometheus.MustNewConstMetric(stepsDesc, prometheus.GaugeValue, float64(n), string(state))
	}
	for _, q := range c.queues {
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(q.QueueLength), q.QueueName)
		ch <- prometheus.MustNewConstMetric(visibleDesc, prometheus.GaugeValue, float64(q.QueueVisibleLength), q.QueueName)
		age := 0.0
		if q.OldestMsgAgeSec != nil {
			age = float64(*q.OldestMsgAgeSec)
		}
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age, q.QueueName)
	}
}

func (c *dbCollector) refresh() {
	c.at = time.Now()
	if err := c.db.Ready(); err != nil {
		c.lastErr = err
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.db.Engine.Counts(ctx)
	if err != nil {
		c.lastErr = err
		return
	}
	queues, err := pgmq.New(c.db.Pool).MetricsAll(ctx)
	if err != nil {
		c.lastErr = err
		return
	}
	c.counts, c.queues, c.lastErr = counts, queues, nil
}
