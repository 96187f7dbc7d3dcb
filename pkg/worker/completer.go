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
			c.flushPending(false)
		case <-c.done:
			c.flushPending(true)
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

// flushPending reports what is pending now, in batches of at most maxCompleteBatch; with all, also what arrives
// meanwhile, until nothing is left. Without all it returns after that: successes of steps the flush itself claimed
// are left for the next round, whose linger gathers them into one batch instead of reporting the first few alone.
func (c *completer) flushPending(all bool) {
	c.mu.Lock()
	left := len(c.pending)
	c.mu.Unlock()
	for all || left > 0 {
		c.mu.Lock()
		n := min(len(c.pending), maxCompleteBatch)
		if !all {
			n = min(n, left)
		}
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
		left -= n
		claimed, extra := c.flush(batch)
		c.w.slots.give(len(batch) + extra - claimed)
		// The successes may have enqueued children on this worker's other queues: claim there at once rather
		// than wait for a notification (which comes only when such a queue had no visible work). The batch's own
		// queue was just claimed from.
		for _, q := range c.w.cfg.Queues {
			if q != batch[0].j.queue || !c.w.claiming.Load() {
				c.w.wakeQueue(q)
			}
		}
	}
}

// flush reports a batch of successes (one call; each on its own if the batch as a whole is refused) and, while
// the worker claims, fills the batch's slots and every other free one (extra of them, taken here) with steps, and
// starts them. The report itself claims the steps its successes made ready on the batch's queues (complete and
// claim in one transaction: the next step of a chain starts one commit after its parent returned). When it made
// none ready, a claim of the batch's queue follows. So a busy worker with quick handlers runs the protocol's own
// rhythm, complete_many(n) then claim(n), one call at a time. It returns how many steps it started (they hold
// slots now) and how many slots it took.
//
// The report claims only the steps it made ready, never from the queue: reading the queue in the same
// transaction would hold the report's task-row and message locks through the read, and the workers' calls would
// wait on each other (measured: twice the lock waits at 8 workers).
func (c *completer) flush(batch []completion) (claimed, extra int) {
	w := c.w
	want := 0
	if w.claiming.Load() {
		extra = w.slots.tryTake(min(w.cfg.Slots, maxClaimBatch) - len(batch))
		want = min(len(batch)+extra, maxClaimBatch)
	}
	taken := c.report(batch, want)
	claimed = w.startClaimed(taken)
	if want == 0 || !w.claiming.Load() {
		return claimed, extra
	}
	queue := batch[0].j.queue
	if len(taken) > 0 {
		// The report made steps ready and took what it could: the queue holds only steps that were there before
		// (the claim loop takes them with the slots given back), or, when it took all it could, maybe more.
		if len(taken) == want {
			w.wakeQueue(queue)
		}
		return claimed, extra
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	began := time.Now()
	steps, err := w.eng.Claim(ctx, queue, want, w.cfg.VisibilityTimeout, w.cfg.ID)
	observeSince(w.metrics.claimCalls, began)
	cancel()
	if err != nil {
		w.log.Warn("claim after a report failed (the queue's claim loop claims at its next poll)", "queue", queue,
			"err", err)
		return claimed, extra
	}
	return claimed + w.startClaimed(steps), extra
}

// report reports a batch of successes in one call, claiming up to want of the steps they made ready, or each on
// its own (claiming nothing) if the batch as a whole is refused. It returns the steps it claimed.
func (c *completer) report(batch []completion, want int) []engine.ClaimedStep {
	w := c.w
	comps := make([]engine.Completion, len(batch))
	for i, b := range batch {
		comps[i] = engine.Completion{Lease: b.j.claim.Lease, Result: b.result}
	}
	var (
		results []error
		taken   []engine.ClaimedStep
	)
	err := c.retry(len(batch), func(ctx context.Context) (err error) {
		began := time.Now()
		results, taken, err = w.eng.CompleteAndClaim(ctx, comps, want, w.cfg.VisibilityTimeout, w.cfg.ID)
		observeSince(w.metrics.completeCalls, began)
		return err
	})
	if err != nil {
		if len(batch) > 1 && !errors.Is(err, engine.ErrUnavailable) {
			// Something in the batch upset the call as a whole: report each on its own.
			for _, b := range batch {
				c.report([]completion{b}, 0)
			}
			return nil
		}
		for _, b := range batch {
			w.metrics.lost.WithLabelValues(b.j.queue, b.j.claim.Handler).Inc()
			w.log.Error("could not report a success (the step runs again when its lease expires)",
				append(b.j.attrs(), "err", err)...)
			b.j.endSpan(OutcomeUnreported, err)
		}
		return nil
	}
	c.outcomes(batch, results)
	return taken
}

// retry makes a reporting call, again while the database is unavailable and the leases may still be valid (the
// shortest lease a step can hold is the visibility timeout, counted from now).
func (c *completer) retry(count int, call func(context.Context) error) error {
	deadline := time.Now().Add(c.w.cfg.VisibilityTimeout)
	return defaultRetry.do(context.Background(), func() time.Time { return deadline },
		func(err error, in time.Duration) {
			c.w.log.Warn("completing steps failed, retrying", "count", count, "err", err, "retryIn", in)
		}, call)
}

// outcomes records what the engine said of each reported success.
func (c *completer) outcomes(batch []completion, results []error) {
	w := c.w
	for i, b := range batch {
		if errors.Is(results[i], engine.ErrResultRefused) {
			w.metrics.failed.WithLabelValues(b.j.queue, b.j.claim.Handler).Inc()
			w.log.Error("the database refused the result: the step failed, with the reason as its error",
				append(b.j.attrs(), "err", results[i])...)
			b.j.endSpan(OutcomeResultRefused, results[i])
			continue
		}
		if results[i] != nil {
			w.metrics.lost.WithLabelValues(b.j.queue, b.j.claim.Handler).Inc()
			w.log.Info("result rejected: the lease is no longer valid", append(b.j.attrs(), "err", results[i])...)
			b.j.endSpan(OutcomeStaleLease, results[i])
			continue
		}
		w.metrics.succeeded.WithLabelValues(b.j.queue, b.j.claim.Handler).Inc()
		b.j.endSpan(OutcomeSucceeded, nil)
	}
}
