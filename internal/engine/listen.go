package engine

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Notification channels. Payloads carry ids only.
const (
	// ChannelQueue is notified with a queue's name when a message became visible in it (a step was enqueued or
	// released) while no earlier message of the queue was visible: idle workers of that queue claim at once
	// instead of waiting for their next poll. Workers that find work keep claiming without notifications, and a
	// busy queue's commits stay free of NOTIFY (which serialises committing transactions). Delayed messages
	// (retries with backoff) are not announced when they become visible: workers find them by polling.
	ChannelQueue = "tasker_queue"
	// ChannelTask is notified with a task's id (decimal) when the task was admitted, failed or was cancelled, or
	// an operator action changed it or one of its steps. Workers' claims and completions (a task started or
	// succeeded) do not notify: a notifying commit holds a database-wide lock until its WAL is flushed, which
	// would serialise busy workers' commits; follow those with TaskChanges. Step progress is not announced: read
	// it (GetTask) at the pace you need. PostgreSQL folds identical notifications of one transaction into one.
	ChannelTask = "tasker_task"
)

// Notifications are the callbacks of Listen. They run on Listen's goroutine, one at a time: keep them short
// (hand the id to a channel or a work queue).
type Notifications struct {
	// OnTask is called with the id of a task that changed.
	OnTask func(taskID int64)
	// OnQueue is called with the name of a queue that got work.
	OnQueue func(queue string)
	// OnConnect is called after each (re)connection, once listening. Notifications sent while disconnected are
	// lost: resynchronise here (a worker claims, the operator refreshes every active task).
	OnConnect func()
}

// Listen runs a LISTEN loop for ChannelTask and ChannelQueue on a dedicated connection (configured like the
// engine's pool), calling n's callbacks, until ctx ends; it then returns nil. When the connection fails, it
// reconnects with exponential backoff (100 ms doubling to 10 s, with jitter) and calls OnConnect again.
func (e *Engine) Listen(ctx context.Context, n Notifications) error {
	backoff := 100 * time.Millisecond
	const maxBackoff = 10 * time.Second
	for {
		connected, _ := e.listenOnce(ctx, n)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = 100 * time.Millisecond
		}
		delay := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenOnce connects, listens and dispatches until the connection fails or ctx ends. connected reports
// whether it got as far as listening.
func (e *Engine) listenOnce(ctx context.Context, n Notifications) (connected bool, err error) {
	cfg := e.pool.Config().ConnConfig.Copy()
	connectCtx, cancel := context.WithTimeout(ctx, e.opts.QueryTimeout)
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	cancel()
	if err != nil {
		return false, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	setupCtx, cancel := context.WithTimeout(ctx, e.opts.QueryTimeout)
	_, err = conn.Exec(setupCtx, "LISTEN "+ChannelTask+"; LISTEN "+ChannelQueue)
	cancel()
	if err != nil {
		return false, err
	}
	if n.OnConnect != nil {
		n.OnConnect()
	}
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		switch note.Channel {
		case ChannelTask:
			if n.OnTask != nil {
				if id, err := strconv.ParseInt(note.Payload, 10, 64); err == nil {
					n.OnTask(id)
				}
			}
		case ChannelQueue:
			if n.OnQueue != nil {
				n.OnQueue(note.Payload)
			}
		}
	}
}

// TaskChanges returns the ids of tasks with a task-level change (started, succeeded, failed, cancelled, resumed:
// a row of the task's history) recorded after cursor, oldest first, at most limit changes, and
// the cursor to pass next time. Start from cursor 0, or from LatestTaskChange to skip the past.
//
// Workers' transactions do not announce the changes they make with NOTIFY (see ChannelTask), so a caller that
// follows tasks polls this. History ids are taken when a row is inserted, not when its transaction commits, so a
// change committed late behind a higher id already read is skipped: combine with a periodic full re-read.
func (e *Engine) TaskChanges(ctx context.Context, cursor int64, limit int) (taskIDs []int64, next int64, err error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	rows, err := e.pool.Query(cctx, sqlTaskChanges, cursor, limit)
	if err != nil {
		return nil, cursor, dbError(ctx, "task changes", err)
	}
	next = cursor
	seen := map[int64]bool{}
	var id, task int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &task}, func() error {
		next = id
		if !seen[task] {
			seen[task] = true
			taskIDs = append(taskIDs, task)
		}
		return nil
	}); err != nil {
		return nil, cursor, dbError(ctx, "task changes", err)
	}
	return taskIDs, next, nil
}

// LatestTaskChange returns the cursor of the newest task-level change (0 when there is none): TaskChanges after
// it returns only what happens from now on.
func (e *Engine) LatestTaskChange(ctx context.Context) (int64, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var id int64
	if err := e.pool.QueryRow(cctx, sqlLatestChange).Scan(&id); err != nil {
		return 0, dbError(ctx, "task changes", err)
	}
	return id, nil
}
