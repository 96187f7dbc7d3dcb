package worker

import (
	"context"
	"errors"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// retryPolicy makes the worker's protocol calls again while the database is unavailable (engine.ErrUnavailable):
// after a pause that starts at first and doubles up to max, as long as the next attempt would start before the
// caller's deadline (the lease's expiry: a report after it is rejected anyway). Each attempt gets callTimeout.
type retryPolicy struct {
	first, max, callTimeout time.Duration
	now                     func() time.Time
}

// defaultRetry: 50 ms doubling to 2 s, 10 s per attempt.
var defaultRetry = retryPolicy{first: 50 * time.Millisecond, max: 2 * time.Second, callTimeout: 10 * time.Second,
	now: time.Now}

// do runs call until it succeeds, fails with another error, or the next attempt would start after deadline()
// (asked before each pause: a lease may be extended meanwhile); it returns the last error. onRetry (optional) hears of each retry. Ending ctx ends a pause early, and the
// retries with it (ctx's error is returned then).
func (p retryPolicy) do(ctx context.Context, deadline func() time.Time, onRetry func(err error, in time.Duration),
	call func(context.Context) error) error {
	pause := p.first
	for {
		cctx, cancel := context.WithTimeout(ctx, p.callTimeout)
		err := call(cctx)
		cancel()
		if err == nil || !errors.Is(err, engine.ErrUnavailable) || p.now().Add(pause).After(deadline()) {
			return err
		}
		if onRetry != nil {
			onRetry(err, pause)
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		pause = min(2*pause, p.max)
	}
}
