package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

// Defaults of Config.
const (
	// DefaultSlots is the number of handlers a worker runs at once. Small on purpose: a worker pod is sized for a
	// few concurrent handlers doing real work, and the operator scales pods by backlog. Raise it for handlers that
	// mostly wait on I/O.
	DefaultSlots = 4
	// DefaultVisibilityTimeout is a claim's lease: how long a step stays invisible to other workers without a
	// heartbeat. It bounds how long the steps of a worker that died wait before another worker re-runs them, so
	// it is short; heartbeats keep long handlers' leases alive.
	DefaultVisibilityTimeout = 30 * time.Second
	// DefaultPollInterval is how often an idle worker claims without having been woken by a notification. LISTEN
	// wakes workers at once when work arrives; the poll covers notifications lost during a reconnection and
	// retries whose backoff delay ended (those are not announced).
	DefaultPollInterval = time.Second
	// DefaultDrainTimeout is how long in-flight handlers may run on after shutdown starts. It is below
	// Kubernetes' default terminationGracePeriodSeconds (30 s), leaving time to give back the steps of handlers
	// that do not finish and to deregister before the kubelet kills the pod.
	DefaultDrainTimeout = 25 * time.Second
	// DefaultRecordInterval is how often a worker reports itself in tasker.workers (queues, slots, in-flight).
	DefaultRecordInterval = 10 * time.Second
	// EnvWorkerID is the environment variable Config.ID defaults to. The operator sets it to the pod's name, so
	// that worker records in the database map to pods.
	EnvWorkerID = "TASKER_WORKER_ID"
)

// maxClaimBatch bounds one claim (the protocol allows 1 000 messages per call).
const maxClaimBatch = 1000

// maxCompleteBatch bounds one CompleteMany call (one transaction locking every task of the batch).
const maxCompleteBatch = 500

// Config configures a Worker. Only Queues is required; every other field has a documented default.
type Config struct {
	// Queues the worker claims steps from (names matching ^[a-z0-9_]{1,40}$). Required. Each queue gets its own
	// claim loop; all of them share the worker's slots.
	Queues []string
	// Slots is the number of handlers running at once. Default DefaultSlots (4). A claim asks for as many steps
	// as there are free slots, so a busy worker takes work in batches and never holds steps it cannot start.
	Slots int
	// ID names the worker in the database (claims, transitions, tasker.workers). Default: the TASKER_WORKER_ID
	// environment variable (the operator injects the pod name there), else the host name (a pod's name, too).
	// Two live workers must not share an ID.
	ID string
	// VisibilityTimeout is the lease of a claim (rounded up to whole seconds). Default DefaultVisibilityTimeout
	// (30 s). When a worker dies, its steps run again elsewhere after this long.
	VisibilityTimeout time.Duration
	// HeartbeatInterval is how often the lease of a running handler is extended (by VisibilityTimeout), and so
	// how soon a handler learns that its task was cancelled. Default VisibilityTimeout / 3: two heartbeats may
	// fail before the lease runs out. The first heartbeat comes one interval after the handler started: short
	// handlers never heartbeat. Must be below VisibilityTimeout.
	HeartbeatInterval time.Duration
	// PollInterval is how often an idle queue is claimed without a notification. Default DefaultPollInterval
	// (1 s).
	PollInterval time.Duration
	// DrainTimeout is the grace period of a shutdown: when Run's context ends, the worker stops claiming and
	// lets in-flight handlers finish for up to this long; then it cancels the handlers still running (their
	// context's cause is ErrDraining) and gives their steps back. Default DefaultDrainTimeout (25 s). Negative:
	// cancel at once.
	DrainTimeout time.Duration
	// RecordInterval is how often the worker reports itself in tasker.workers. Default DefaultRecordInterval
	// (10 s).
	RecordInterval time.Duration
	// Logger receives the worker's structured logs. Default slog.Default(). A logr.Logger can be used through
	// slog.New(logr.ToSlogHandler(l)).
	Logger *slog.Logger
	// Registerer, when set, registers the worker's Prometheus metrics (tasker_worker_*). Several workers may
	// share one: they then share the metrics. Nil: metrics are kept but not exported.
	Registerer prometheus.Registerer
	// TracerProvider makes the spans of step attempts (docs/tracing.md): one per attempt, a child of its task's
	// trace context, in whose context the handler runs. Nil: the global provider (otel.GetTracerProvider) as it
	// is when New runs, so install it first (pkg/tracing.Setup does, from the OTEL_* environment). A provider
	// that does not trace (the no-op one, or the global one with nothing installed) costs nothing per step.
	TracerProvider trace.TracerProvider
}

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if len(c.Queues) == 0 {
		errs = append(errs, errors.New("at least one queue is required"))
	}
	seen := map[string]bool{}
	for _, q := range c.Queues {
		if err := pgmq.ValidateQueueName(q); err != nil {
			errs = append(errs, fmt.Errorf("queue %q: must match ^[a-z0-9_]{1,40}$", q))
		}
		if seen[q] {
			errs = append(errs, fmt.Errorf("queue %q listed twice", q))
		}
		seen[q] = true
	}
	c.Queues = append([]string(nil), c.Queues...)
	switch {
	case c.Slots == 0:
		c.Slots = DefaultSlots
	case c.Slots < 0 || c.Slots > 10000:
		errs = append(errs, fmt.Errorf("slots must be between 1 and 10000, got %d", c.Slots))
	}
	if c.ID == "" {
		c.ID = os.Getenv(EnvWorkerID)
	}
	if c.ID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "worker"
		}
		c.ID = host
	}
	if len(c.ID) > 255 {
		errs = append(errs, errors.New("id must be at most 255 characters"))
	}
	switch {
	case c.VisibilityTimeout == 0:
		c.VisibilityTimeout = DefaultVisibilityTimeout
	case c.VisibilityTimeout < time.Second:
		errs = append(errs, fmt.Errorf("visibility timeout must be at least 1s, got %s", c.VisibilityTimeout))
	}
	switch {
	case c.HeartbeatInterval == 0:
		c.HeartbeatInterval = c.VisibilityTimeout / 3
	case c.HeartbeatInterval < 0 || c.HeartbeatInterval >= c.VisibilityTimeout:
		errs = append(errs, fmt.Errorf("heartbeat interval must be positive and below the visibility timeout (%s)",
			c.VisibilityTimeout))
	}
	switch {
	case c.PollInterval == 0:
		c.PollInterval = DefaultPollInterval
	case c.PollInterval < 0:
		errs = append(errs, errors.New("poll interval must be positive"))
	}
	switch {
	case c.DrainTimeout == 0:
		c.DrainTimeout = DefaultDrainTimeout
	case c.DrainTimeout < 0:
		c.DrainTimeout = 0
	}
	switch {
	case c.RecordInterval == 0:
		c.RecordInterval = DefaultRecordInterval
	case c.RecordInterval < 0:
		errs = append(errs, errors.New("record interval must be positive"))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("worker: invalid config: %w", errors.Join(errs...))
	}
	return c, nil
}
