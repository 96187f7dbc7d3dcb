// Package engine is tasker's workflow engine: admission of tasks (DAGs of steps) into PostgreSQL, the worker
// protocol (claim, complete, fail, heartbeat, release), operator actions (cancel, retry, resolve, complete by
// hand), task status reads, upkeep, and LISTEN/NOTIFY wake-ups.
//
// The state lives in schema tasker (internal/store) and the queues in pgmq; every state change is one call of a
// SQL function, one round trip, so that the database stays the single source of truth and a worker written in
// any language can take part (docs/worker-protocol.md). This package is a thin, typed Go client of those
// functions, used by the Kubernetes controllers and the Go worker SDK. It imports nothing from Kubernetes.
//
// The schema must be migrated first (store.Migrate).
package engine

import (
	"context"
	"embed"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed sql/*.sql
var sqlFS embed.FS

// withoutTraceColumns removes the columns migrations 15 (item, item_index) and 18 (trace_context, ready_at) added
// from a claim's SELECT: what a database before migration 15 can answer.
func withoutTraceColumns(sql string) string {
	const cols = ", c.item, c.item_index, c.trace_context, c.ready_at"
	if !strings.Contains(sql, cols) {
		panic("claim SQL without " + cols)
	}
	return strings.Replace(sql, cols, "", 1)
}

// byExternalKey derives the query of a task by its external key ($1 text) from its query by id, whose condition
// on the id is idCond, written once (task_by_id.sql, steps_by_task_id.sql): the two differ only there.
func byExternalKey(sql, idCond, keyCond string) string {
	if strings.Count(sql, idCond) != 1 {
		panic("task query without exactly one " + idCond)
	}
	return strings.Replace(sql, idCond, keyCond, 1)
}

func mustSQL(name string) string {
	b, err := sqlFS.ReadFile("sql/" + name + ".sql")
	if err != nil {
		panic(err)
	}
	return string(b)
}

var (
	sqlAdmit          = mustSQL("admit")
	sqlClaim          = mustSQL("claim")
	sqlComplete       = mustSQL("complete")
	sqlCompleteMany   = mustSQL("complete_many")
	sqlCompleteClaim  = mustSQL("complete_and_claim")
	sqlFail           = mustSQL("fail")
	sqlHeartbeat      = mustSQL("heartbeat")
	sqlRelease        = mustSQL("release")
	sqlCancelTask     = mustSQL("cancel_task")
	sqlRetryStep      = mustSQL("retry_step")
	sqlResolveStep    = mustSQL("resolve_step")
	sqlCompleteStep   = mustSQL("complete_step")
	sqlTaskByID       = mustSQL("task_by_id")
	sqlTaskByKey      = byExternalKey(sqlTaskByID, "WHERE t.id = $1::bigint", "WHERE t.external_key = $1::text")
	sqlTaskIDByKey    = mustSQL("task_id_by_key")
	sqlStepsByTaskID  = mustSQL("steps_by_task_id")
	sqlStepsByTaskKey = byExternalKey(sqlStepsByTaskID, "WHERE s.task_id = $1::bigint",
		"WHERE s.task_id = (SELECT t.id FROM tasker.tasks AS t WHERE t.external_key = $1::text)")
	sqlUpkeep                 = mustSQL("upkeep")
	sqlDropQueues             = mustSQL("drop_unused_queues")
	sqlConditions             = mustSQL("condition_problems")
	sqlForEachProblems        = mustSQL("for_each_problems")
	sqlTaskIDByIdempotencyKey = mustSQL("task_id_by_idempotency_key")
	sqlSignal                 = mustSQL("signal")
	sqlWorkerHeartbeat        = mustSQL("worker_heartbeat")
	sqlWorkerStopped          = mustSQL("worker_stopped")
	sqlTaskChanges            = mustSQL("task_changes")
	sqlHistory                = mustSQL("history")
	sqlLatestChange           = mustSQL("latest_task_change")
	sqlStepInputs             = mustSQL("step_inputs")
	sqlRecordAction           = mustSQL("record_action")

	// Claims of a database older than migration 15, without item, item_index, trace_context and ready_at (a
	// database between 15 and 17 answers them too).
	sqlClaimV14         = withoutTraceColumns(sqlClaim)
	sqlCompleteClaimV14 = withoutTraceColumns(sqlCompleteClaim)
)

// Defaults of Options.
const (
	// DefaultQueryTimeout bounds a call whose context has no deadline. Protocol calls take milliseconds; ten
	// seconds means the database is in trouble, and the caller is better told so than left hanging.
	DefaultQueryTimeout = 10 * time.Second
	// DefaultRetention is how long a finished task is kept when its spec does not say (TaskSpec.Retention).
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultUpkeepBatchSize bounds each part of one upkeep transaction (see Upkeep).
	DefaultUpkeepBatchSize = 500
	// DefaultLeaseGrace: upkeep re-sends the message of a running step only when its lease expired this long
	// ago and the message is gone (normally the message reappears on its own and a claim re-takes the step).
	DefaultLeaseGrace = 30 * time.Second
	// DefaultArchiveRetention: rows of tasker queues' pgmq archives older than this are deleted by upkeep.
	DefaultArchiveRetention = 7 * 24 * time.Hour
	// DefaultWorkerTTL: workers that have not reported for this long are forgotten by upkeep.
	DefaultWorkerTTL = 24 * time.Hour
	// DefaultUnusedQueueAge: upkeep drops a queue tasker created once no step uses it, if it is at least this old
	// (so that a queue in steady use between two tasks is not dropped and created again).
	DefaultUnusedQueueAge = 24 * time.Hour
)

// Options tune an Engine. The zero value gives the documented defaults.
type Options struct {
	// QueryTimeout applies to every call whose context has no deadline. Default DefaultQueryTimeout.
	QueryTimeout time.Duration
	// DefaultRetention applies to tasks admitted with TaskSpec.Retention zero. Default DefaultRetention.
	DefaultRetention time.Duration
	// UpkeepBatchSize, LeaseGrace, ArchiveRetention, WorkerTTL and UnusedQueueAge tune Upkeep; defaults above.
	UpkeepBatchSize  int
	LeaseGrace       time.Duration
	ArchiveRetention time.Duration
	WorkerTTL        time.Duration
	UnusedQueueAge   time.Duration
}

func (o Options) withDefaults() Options {
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.DefaultRetention <= 0 {
		o.DefaultRetention = DefaultRetention
	}
	if o.UpkeepBatchSize <= 0 {
		o.UpkeepBatchSize = DefaultUpkeepBatchSize
	}
	if o.LeaseGrace <= 0 {
		o.LeaseGrace = DefaultLeaseGrace
	}
	if o.ArchiveRetention <= 0 {
		o.ArchiveRetention = DefaultArchiveRetention
	}
	if o.WorkerTTL <= 0 {
		o.WorkerTTL = DefaultWorkerTTL
	}
	if o.UnusedQueueAge <= 0 {
		o.UnusedQueueAge = DefaultUnusedQueueAge
	}
	return o
}

// Engine is the Go API of tasker's engine. It is safe for concurrent use.
type Engine struct {
	pool *pgxpool.Pool
	opts Options
	// noCompleteClaim is set when the database predates tasker.complete_and_claim (migration 7): a worker built
	// with this SDK may run before the operator has migrated its database.
	noCompleteClaim atomic.Bool
	// noTraceColumns is set when the database's claims predate item and trace_context (migrations 15 and 18):
	// the worker then claims with the columns of schema 14.
	noTraceColumns atomic.Bool
}

// New returns an Engine working on pool (see store.Open for a pool with sane session settings).
func New(pool *pgxpool.Pool, opts Options) *Engine {
	return &Engine{pool: pool, opts: opts.withDefaults()}
}

// Pool returns the pool the engine works on.
func (e *Engine) Pool() *pgxpool.Pool { return e.pool }

// callCtx applies the default timeout when ctx has no deadline.
func (e *Engine) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, e.opts.QueryTimeout)
}
