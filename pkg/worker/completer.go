package worker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// completer reports successes in batches, group-commit style: when idle it flushes a completion at once (so a
// chain of steps never waits for a timer), and completions that arrive while a flush is in flight go together
// in the next one. Under load a batch holds whatever finished during one round trip.
type completer struct {
	w       *Worker
	mu      sync.Mutex
	pending []completion
	kick    chan struct{}
	done    chan struct{}
}

type completion struct {
	j      *job
	result json.RawMessage
}

func newCompleter(w *Worker) *completer {
	return &completer{w: w, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

func (c *completer) add(j *job, result json.RawMessage) {
	c.mu.Lock()
	c.pending = append(c.pending, completion{j: j, result: result})
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// stop makes run flush what is pending and return.
func (c *completer) stop() { close(c.done) }

func (c *completer) run() {
	for {
		select {
		case <-c.kick:
			c.linger()
			c.flushAll()
		case <-c.done:
			c.flushAll()
			return
		}
	}
}

// maxLinger bounds how long a report waits for the rest of a burst.
const maxLinger = time.Millisecond

// linger waits, at most maxLinger, while handlers that started just before this success are still running: they
// were most likely claimed in the same batch and finish within microseconds, and one report for all of them costs
// a fraction of several. A success with no such sibling (a step of a chain) is reported at once.
func (c *completer) linger() {
	start := time.Now()
	for c.w.runningSince(start.Add(-maxLinger)) > 0 {
		left := maxLinger - time.Since(start)
		if left <= 0 {
			return
		}
		t := time.NewTimer(min(left, 100*time.Microsecond))
		select {
		case <-c.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

func (c *completer) flushAll() {
	for {
		c.mu.Lock()
		n := min(len(c.pending), maxCompleteBatch)
		batch := make([]completion, n)
		copy(batch, c.pending[:n])
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		c.mu.Unlock()
		if n == 0 {
			return
		}
		c.flush(batch)
		c.w.slots.give(len(batch))
		// The successes may have enqueued children on this worker's queues: claim at once rather than wait for
		// the notification (or, if a queue still had visible work, for none: tasker_queue announces only empty
		// queues getting work). A chain's next step starts one round trip after its parent is reported.
		c.w.wakeAll()
	}
}

// flush reports a batch of successes (one call; each on its own if the batch as a whole is refused).
func (c *completer) flush(batch []completion) {
	w := c.w
	comps := make([]engine.Completion, len(batch))
	for i, b := range batch {
		comps[i] = engine.Completion{Lease: b.j.claim.Lease, Result: b.result}
	}
	var (
		results []error
		err     error
	)
	start := time.Now()
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		results, err = w.eng.CompleteMany(ctx, comps)
		cancel()
		// Retry while the database is unavailable, as long as the leases may still be valid.
		if err == nil || !errors.Is(err, engine.ErrUnavailable) || time.Since(start)+backoff > w.cfg.VisibilityTimeout {
			break
		}
		w.log.Warn("completing steps failed, retrying", "count", len(batch), "err", err, "retryIn", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	if err != nil {
		if len(batch) > 1 && !errors.Is(err, engine.ErrUnavailable) {
			// Something in the batch upset the call as a whole: report each on its own.
			for _, b := range batch {
				c.flush([]completion{b})
			}
			return
		}
		for _, b := range batch {
			w.metrics.lost.WithLabelValues(b.j.queue, b.j.claim.Handler).Inc()
			w.log.Error("could not report a success (the step runs again when its lease expires)",
				append(b.j.attrs(), "err", err)...)
		}
		return
	}
	for i, b := range batch {
		if results[i] != nil {
			w.metrics.lost.WithLabelValues(b.j.queue, b.j.claim.Handler).Inc()
			w.log.Info("result rejected: the lease is no longer valid", append(b.j.attrs(), "err", results[i])...)
			continue
		}
		w.metrics.succeeded.WithLabelValues(b.j.queue, b.j.claim.Handler).Inc()
	}
}
