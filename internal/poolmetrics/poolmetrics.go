// Package poolmetrics reads what the WorkerPool controller scales on: the backlog of a pool's queues
// (tasker.queue_backlog: claimable or in flight) and the workers' own records in tasker.workers. It imports
// nothing from Kubernetes; the controller calls it and never writes SQL itself.
package poolmetrics

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

//go:embed sql/workers.sql
var workersSQL string

//go:embed sql/legacy_queues.sql
var legacyQueuesSQL string

//go:embed sql/backlog.sql
var backlogSQL string

// Reader runs the queries on db: in the operator, the one connection pool shared by every WorkerPool.
type Reader struct {
	db pgmq.DBTX
}

// New returns a Reader on db (a *pgxpool.Pool in the operator).
func New(db pgmq.DBTX) *Reader { return &Reader{db: db} }

// Backlog is the summed backlog of a pool's queues.
type Backlog struct {
	// Total is the sum over the queues of tasker.queue_backlog: every message a worker could claim now or holds
	// (in flight, invisible); not the messages that wait for their time (a step's delay, a retry's backoff), which
	// no replica could take yet.
	Total int64
	// PerQueue is each queue's backlog.
	PerQueue map[string]int64
	// Missing lists the queues that do not exist (yet): they count as empty. Queues are created when the first
	// Task using them is admitted.
	Missing []string
}

// Backlog reads tasker.queue_backlog for each queue, in one query: either all of them are read or the reading
// fails (a partial sum would under-count and scale the pool in).
func (r *Reader) Backlog(ctx context.Context, queues []string) (Backlog, error) {
	b := Backlog{PerQueue: make(map[string]int64, len(queues))}
	if len(queues) == 0 {
		return b, nil
	}
	rows, err := r.db.Query(ctx, backlogSQL, queues)
	if err != nil {
		return Backlog{}, fmt.Errorf("poolmetrics: backlog of queues %v: %w", queues, err)
	}
	var (
		q string
		n *int64
	)
	_, err = pgx.ForEachRow(rows, []any{&q, &n}, func() error {
		if _, seen := b.PerQueue[q]; seen {
			return nil
		}
		if n == nil {
			b.PerQueue[q] = 0
			b.Missing = append(b.Missing, q)
			return nil
		}
		b.PerQueue[q] = *n
		b.Total += *n
		return nil
	})
	if err != nil {
		return Backlog{}, fmt.Errorf("poolmetrics: backlog of queues %v: %w", queues, err)
	}
	return b, nil
}

// LegacyQueues returns those of queues (names as they were before queues were namespaced, see queuescope) that
// still hold unfinished steps of unfinished tasks of namespace, in name order: the steps a pool of that namespace
// must still drain after an upgrade. Nil when there are none.
func (r *Reader) LegacyQueues(ctx context.Context, namespace string, queues []string) ([]string, error) {
	if len(queues) == 0 {
		return nil, nil
	}
	rows, err := r.db.Query(ctx, legacyQueuesSQL, namespace, queues)
	if err != nil {
		return nil, fmt.Errorf("poolmetrics: queues from before namespaced queues: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("poolmetrics: queues from before namespaced queues: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Worker is one worker's self-report.
type Worker struct {
	ID string
	// InFlight is the number of steps the worker said it was running at its last heartbeat.
	InFlight int32
	Slots    int32
	// LastHeartbeat is the server time of the worker's last report.
	LastHeartbeat time.Time
	// Fresh: the last report is recent enough (see Workers) to be believed.
	Fresh bool
}

// Workers returns the records of the workers with the given ids, keyed by id; ids without a record are absent.
// A record is fresh when its last heartbeat is less than staleAfter old by the database's clock.
func (r *Reader) Workers(ctx context.Context, ids []string, staleAfter time.Duration) (map[string]Worker, error) {
	out := make(map[string]Worker, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := r.db.Query(ctx, workersSQL, ids, staleAfter.Seconds())
	if err != nil {
		return nil, fmt.Errorf("poolmetrics: worker records: %w", err)
	}
	ws, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Worker, error) {
		var w Worker
		err := row.Scan(&w.ID, &w.InFlight, &w.Slots, &w.LastHeartbeat, &w.Fresh)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("poolmetrics: worker records: %w", err)
	}
	for _, w := range ws {
		out[w.ID] = w
	}
	return out, nil
}
