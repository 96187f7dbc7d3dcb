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

// Every database figure has the label database: a TaskerDatabase's name, or "default" for --database-url.
var (
	tasksDesc = prometheus.NewDesc("tasker_tasks", "Tasks in the database (within their retention) by phase.",
		[]string{"database", "phase"}, nil)
	stepsDesc = prometheus.NewDesc("tasker_steps", "Steps in the database (within their tasks' retention) by state.",
		[]string{"database", "state"}, nil)
	backlogDesc = prometheus.NewDesc("tasker_queue_backlog", "Messages in a queue, in flight included (pgmq queue_length).",
		[]string{"database", "queue"}, nil)
	visibleDesc = prometheus.NewDesc("tasker_queue_visible", "Messages in a queue that a worker could claim now.",
		[]string{"database", "queue"}, nil)
	ageDesc = prometheus.NewDesc("tasker_queue_oldest_message_age_seconds", "Age of the oldest message in a queue (0 when empty).",
		[]string{"database", "queue"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("tasker_database_metrics_up", "1 when the last read of the database figures succeeded.",
		[]string{"database"}, nil)
	databaseUpDesc = prometheus.NewDesc("tasker_database_up",
		"1 when the database's last probe reached it with the schema this operator expects (the leader's probes).",
		[]string{"database"}, nil)
	schemaVersionDesc = prometheus.NewDesc("tasker_database_schema_version",
		"The database's migration version at its last probe (0 until read).", []string{"database"}, nil)
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
	Help: "Runs of the engine's maintenance (step timeouts, lost messages, retention) on the leader, by database and result.",
}, []string{"database", "result"})

func init() {
	initUpkeepRuns("default")
	metrics.Registry.MustRegister(upkeepRuns)
}

// initUpkeepRuns exports a database's runs at 0.
func initUpkeepRuns(database string) {
	upkeepRuns.WithLabelValues(database, upkeepSucceeded)
	upkeepRuns.WithLabelValues(database, upkeepFailed)
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
	for _, d := range []*prometheus.Desc{tasksDesc, stepsDesc, backlogDesc, visibleDesc, ageDesc, scrapeErrorDesc,
		databaseUpDesc, schemaVersionDesc} {
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
	name := c.db.Name
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, up, name)
	for phase, n := range c.counts.Tasks {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), name, string(phase))
	}
	for state, n := range c.counts.Steps {
		ch <- prometheus.MustNewConstMetric(stepsDesc, prometheus.GaugeValue, float64(n), name, string(state))
	}
	for _, q := range c.queues {
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(q.QueueLength), name, q.QueueName)
		ch <- prometheus.MustNewConstMetric(visibleDesc, prometheus.GaugeValue, float64(q.QueueVisibleLength), name, q.QueueName)
		age := 0.0
		if q.OldestMsgAgeSec != nil {
			age = float64(*q.OldestMsgAgeSec)
		}
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age, name, q.QueueName)
	}
}

// registryCollector exports the figures of every database of a Registry, and their probes.
type registryCollector struct{ r *Registry }

func (c registryCollector) Describe(ch chan<- *prometheus.Desc) { (&dbCollector{}).Describe(ch) }

func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.mu.Lock()
	all := make([]*managed, 0, len(c.r.managed))
	for _, m := range c.r.managed {
		all = append(all, m)
	}
	c.r.mu.Unlock()
	for _, m := range all {
		m.figures.Collect(ch)
		p := m.probeSnapshot()
		if p.At.IsZero() {
			continue // not probed on this replica (not the leader)
		}
		up := 0.0
		if p.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(databaseUpDesc, prometheus.GaugeValue, up, m.name)
		ch <- prometheus.MustNewConstMetric(schemaVersionDesc, prometheus.GaugeValue, float64(p.SchemaVersion), m.name)
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
