package engine

import (
	"context"
	"time"
)

// UpkeepReport counts what Upkeep did.
type UpkeepReport struct {
	// TimedOut steps ran past their timeout and were failed (as retryable errors).
	TimedOut int
	// Repaired steps had lost their message and got a new one.
	Repaired int
	// DeletedTasks were finished tasks past their retention, deleted with their steps and history.
	DeletedTasks int
	// ArchiveDeleted rows were trimmed from tasker queues' pgmq archives.
	ArchiveDeleted int64
	// WorkersDeleted workers had stopped reporting.
	WorkersDeleted int
	// QueuesDropped queues tasker had created were used by no step any more, and dropped.
	QueuesDropped int
}

func (r *UpkeepReport) add(o UpkeepReport) {
	r.TimedOut += o.TimedOut
	r.Repaired += o.Repaired
	r.DeletedTasks += o.DeletedTasks
	r.ArchiveDeleted += o.ArchiveDeleted
	r.WorkersDeleted += o.WorkersDeleted
	r.QueuesDropped += o.QueuesDropped
}

// maxUpkeepRounds bounds one Upkeep call; the next call carries on.
const maxUpkeepRounds = 20

// Upkeep does the periodic maintenance (tasker.upkeep): fails steps running past their timeout (retryable,
// through the same path as a worker's failure), re-sends messages of steps that lost theirs, deletes finished
// tasks past their retention with their history, trims tasker queues' archives, forgets silent workers, then drops
// queues tasker created that no step uses any more (tasker.drop_unused_queues; Options.UnusedQueueAge). Each
// round is one bounded transaction (Options.UpkeepBatchSize per part); Upkeep runs rounds until there is nothing
// left (at most 20 per call). now is the time to judge by: zero means the database's clock.
//
// Safe to call concurrently (from several replicas), although the operator runs it on its leader only. The
// engine's QueryTimeout applies to each round.
func (e *Engine) Upkeep(ctx context.Context, now time.Time) (_ UpkeepReport, err error) {
	ctx, span := startSpan(ctx, "tasker.upkeep")
	defer func() { endSpan(span, err) }()
	var (
		total UpkeepReport
		asOf  *time.Time
	)
	if !now.IsZero() {
		asOf = &now
	}
	batch := e.opts.UpkeepBatchSize
	for range maxUpkeepRounds {
		var r UpkeepReport
		err := func() error {
			cctx, cancel := e.callCtx(ctx)
			defer cancel()
			return e.pool.QueryRow(cctx, sqlUpkeep, batch, int64(e.opts.LeaseGrace.Seconds()),
				int64(e.opts.ArchiveRetention.Seconds()), int64(e.opts.WorkerTTL.Seconds()), asOf).
				Scan(&r.TimedOut, &r.Repaired, &r.DeletedTasks, &r.ArchiveDeleted, &r.WorkersDeleted)
		}()
		if err != nil {
			return total, dbError(ctx, "upkeep", err)
		}
		total.add(r)
		if r.TimedOut < batch && r.Repaired < batch && r.DeletedTasks < batch && r.ArchiveDeleted < int64(batch) {
			break
		}
	}
	// Concurrency groups: slots that releases could not give (their waiter was locked at the time).
	if _, err := e.DispatchConcurrency(ctx); err != nil {
		return total, err
	}
	// After the deletions above, so that a queue whose last task just went is dropped in the same call.
	err = func() error {
		cctx, cancel := e.callCtx(ctx)
		defer cancel()
		return e.pool.QueryRow(cctx, sqlDropQueues, batch, int64(e.opts.UnusedQueueAge.Seconds()), asOf).
			Scan(&total.QueuesDropped)
	}()
	if err != nil {
		return total, dbError(ctx, "upkeep: drop unused queues", err)
	}
	return total, nil
}
