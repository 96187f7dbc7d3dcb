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
	// ChannelTask is notified with a task's id (decimal) when the task changed state (admitted, started,
	// succeeded, failed, cancelled, resumed) or an operator action changed one of its steps. Step progress of a
	// running task is not announced: read it (GetTask) at the pace you need. PostgreSQL folds identical
	// notifications of one transaction into one.
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
	defer conn.Close(context.WithoutCancel(ctx))

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
