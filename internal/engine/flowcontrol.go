package engine

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

// Flow control (docs/tasks.md#flow-control): concurrency groups of tasks and limits of queues, both enforced by
// the database (functions/concurrency.sql, functions/queue_limits.sql).

var (
	sqlConcurrencyKey      = mustSQL("concurrency_key_problem")
	sqlSetQueueLimits      = mustSQL("set_queue_limits")
	sqlQueueLimits         = mustSQL("queue_limits_status")
	sqlDispatchConcurrency = mustSQL("concurrency_dispatch")
)

// Concurrency strategies: what happens to a task of a full concurrency group.
const (
	// ConcurrencyQueue: the task waits for a slot, behind the group's earlier waiters (the default).
	ConcurrencyQueue = "Queue"
	// ConcurrencyCancelInProgress: the group's oldest running tasks are cancelled to make room for it.
	ConcurrencyCancelInProgress = "CancelInProgress"
	// ConcurrencyCancelNewest: the new task is cancelled at once.
	ConcurrencyCancelNewest = "CancelNewest"
)

// MaxConcurrency bounds Concurrency.MaxRunning.
const MaxConcurrency = 10000

// Concurrency puts a task in a concurrency group: at most MaxRunning unfinished tasks of the group have their
// steps enqueued; the others wait for a slot, in admission order.
type Concurrency struct {
	// Group names the group (lower-case letters, digits, '-', '_', '.', at most 63), within the task's namespace.
	Group string
	// Key, if set, is a SQL/JSON path over {"context": <the task's context>}, e.g. `$.context.customer`: its value
	// (a string, number or boolean) divides the group, one group per value. Evaluated once, at admission.
	Key string
	// MaxRunning is the number of the group's tasks that may run at once, 1 to MaxConcurrency. Zero means 1.
	MaxRunning int
	// Strategy is ConcurrencyQueue (empty means it), ConcurrencyCancelInProgress or ConcurrencyCancelNewest.
	Strategy string
}

type admitConcurrency struct {
	Group      string `json:"group"`
	Key        string `json:"key,omitempty"`
	MaxRunning int    `json:"max_running"`
	Strategy   string `json:"strategy"`
}

var groupNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$`)

// concurrencyDocument validates c (nil: none) and returns the admission document's "concurrency".
func concurrencyDocument(c *Concurrency, add func(field, format string, args ...any)) *admitConcurrency {
	if c == nil {
		return nil
	}
	if !groupNameRE.MatchString(c.Group) {
		add("concurrency.group", "%q is not a valid group name: lower-case letters, digits, '-', '_' and '.', "+
			"at most 63 characters, starting and ending with a letter or digit", c.Group)
	}
	if len(c.Key) > 1024 {
		add("concurrency.key", "must be at most 1024 characters")
	}
	n := c.MaxRunning
	if n == 0 {
		n = 1
	}
	if n < 1 || n > MaxConcurrency {
		add("concurrency.maxRunning", "must be between 1 and %d", MaxConcurrency)
	}
	s := c.Strategy
	switch s {
	case "":
		s = ConcurrencyQueue
	case ConcurrencyQueue, ConcurrencyCancelInProgress, ConcurrencyCancelNewest:
	default:
		add("concurrency.strategy", "must be %s, %s or %s, not %q", ConcurrencyQueue, ConcurrencyCancelInProgress,
			ConcurrencyCancelNewest, s)
	}
	return &admitConcurrency{Group: c.Group, Key: c.Key, MaxRunning: n, Strategy: s}
}

// ConcurrencyState is where a task stands in its concurrency group.
type ConcurrencyState struct {
	// Group is the group's key: "<namespace>/<group>" or "<namespace>/<group>=<key value>".
	Group string
	// Waiting is true while the task waits for a slot (its steps are not enqueued), with Ahead of the group's
	// waiters before it.
	Waiting bool
	Ahead   int
	// MaxRunning is the group's limit and Running the slots taken now.
	MaxRunning, Running int
}

// ConcurrencyKeyProblem says why key cannot be a concurrency key (Concurrency.Key; "" when it can), as admission
// will: PostgreSQL parses it. The admission webhook calls it.
func (e *Engine) ConcurrencyKeyProblem(ctx context.Context, key string) (string, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var p string
	if err := e.pool.QueryRow(cctx, sqlConcurrencyKey, key).Scan(&p); err != nil {
		return "", dbError(ctx, "check the concurrency key", err)
	}
	return p, nil
}

// QueueLimits are the limits of a queue (docs/tasks.md#queue-limits). Zero values mean no limit.
type QueueLimits struct {
	// MaxRunning bounds the queue's steps running at once, across all workers.
	MaxRunning int
	// RateSteps claims per RatePeriod at most (a token bucket with a burst of RateSteps). Both or neither.
	RateSteps  int
	RatePeriod time.Duration
}

// Limited reports whether l limits anything.
func (l QueueLimits) Limited() bool { return l.MaxRunning > 0 || l.RateSteps > 0 }

// SetQueueLimits sets the limits of a database queue (the queue need not exist yet); zero QueueLimits removes
// them. Claims enforce them from their next call.
func (e *Engine) SetQueueLimits(ctx context.Context, queue string, l QueueLimits) error {
	if err := pgmq.ValidateQueueName(queue); err != nil {
		return fmt.Errorf("%w: %q is not a valid queue name: must match ^[a-z0-9_]{1,40}$", ErrInvalidArgument, queue)
	}
	if l.MaxRunning < 0 || l.MaxRunning > math.MaxInt32 || l.RateSteps < 0 || l.RateSteps > math.MaxInt32 ||
		(l.RateSteps > 0) != (l.RatePeriod > 0) || l.RatePeriod < 0 {
		return fmt.Errorf("%w: queue limits: maxRunning and rate steps at least 1 (or 0: none), a rate needs a "+
			"positive period", ErrInvalidArgument)
	}
	var maxRunning, steps *int32
	var seconds *float64
	if l.MaxRunning > 0 {
		v := int32(l.MaxRunning)
		maxRunning = &v
	}
	if l.RateSteps > 0 {
		v, s := int32(l.RateSteps), l.RatePeriod.Seconds()
		steps, seconds = &v, &s
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	if _, err := e.pool.Exec(cctx, sqlSetQueueLimits, queue, maxRunning, steps, seconds); err != nil {
		return dbError(ctx, "set queue limits", err)
	}
	return nil
}

// QueueLimitState is a queue's limits and what they hold now.
type QueueLimitState struct {
	Queue string
	QueueLimits
	// Running is the queue's steps running now (claimed, lease not expired).
	Running int
	// Tokens is what the rate's bucket holds now (claims it allows at once); -1 without a rate.
	Tokens float64
}

// QueueLimitStates returns the limits of those of queues that have any, by queue name.
func (e *Engine) QueueLimitStates(ctx context.Context, queues []string) ([]QueueLimitState, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	rows, err := e.pool.Query(cctx, sqlQueueLimits, queues)
	if err != nil {
		return nil, dbError(ctx, "read queue limits", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (QueueLimitState, error) {
		var (
			s                 QueueLimitState
			maxRunning, steps *int32
			seconds, tokens   *float64
			running           int64
		)
		if err := row.Scan(&s.Queue, &maxRunning, &steps, &seconds, &running, &tokens); err != nil {
			return s, err
		}
		if maxRunning != nil {
			s.MaxRunning = int(*maxRunning)
		}
		if steps != nil && seconds != nil {
			s.RateSteps = int(*steps)
			s.RatePeriod = time.Duration(*seconds * float64(time.Second))
		}
		s.Running = int(running)
		s.Tokens = -1
		if tokens != nil {
			s.Tokens = *tokens
		}
		return s, nil
	})
	if err != nil {
		return nil, dbError(ctx, "read queue limits", err)
	}
	return out, nil
}

// DispatchConcurrency gives free slots of concurrency groups to waiting tasks that a release had to skip (their
// steps were locked at the time: someone was changing them). Upkeep calls it; it returns how many tasks it
// started.
func (e *Engine) DispatchConcurrency(ctx context.Context) (int, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var n int32
	if err := e.pool.QueryRow(cctx, sqlDispatchConcurrency, int32(min(e.opts.UpkeepBatchSize, math.MaxInt32))).Scan(&n); err != nil {
		return 0, dbError(ctx, "dispatch concurrency groups", err)
	}
	return int(n), nil
}
