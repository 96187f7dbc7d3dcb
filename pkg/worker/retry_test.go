package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestRetryPolicy(t *testing.T) {
	unavailable := &engine.DatabaseError{Op: "complete", Unavailable: true, Err: errors.New("connection refused")}
	other := errors.New("permission denied")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		results   []error       // what successive calls return (the last repeats)
		deadline  time.Duration // after start; the fake clock advances by each pause
		wantCalls int
		wantErr   error
		wantWaits []time.Duration
	}{
		{"success at once", []error{nil}, time.Minute, 1, nil, nil},
		{"another error is not retried", []error{other}, time.Minute, 1, other, nil},
		{"unavailable, then success", []error{unavailable, unavailable, nil}, time.Minute, 3, nil,
			[]time.Duration{time.Millisecond, 2 * time.Millisecond}},
		{"pauses double up to the maximum", []error{unavailable, unavailable, unavailable, unavailable, nil}, time.Minute,
			5, nil, []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}},
		{"gives up when the next attempt would start after the deadline", []error{unavailable}, 5 * time.Millisecond,
			3, unavailable, []time.Duration{time.Millisecond, 2 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := start
			p := retryPolicy{first: time.Millisecond, max: 4 * time.Millisecond, callTimeout: time.Second,
				now: func() time.Time { return now }}
			var calls int
			var waits []time.Duration
			err := p.do(context.Background(), func() time.Time { return start.Add(tt.deadline) }, func(_ error, in time.Duration) {
				waits = append(waits, in)
				now = now.Add(in)
			}, func(ctx context.Context) error {
				if _, ok := ctx.Deadline(); !ok {
					t.Error("call without a deadline")
				}
				calls++
				return tt.results[min(calls, len(tt.results))-1]
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls, tt.wantCalls)
			}
			if len(waits) != len(tt.wantWaits) {
				t.Fatalf("pauses %v, want %v", waits, tt.wantWaits)
			}
			for i := range waits {
				if waits[i] != tt.wantWaits[i] {
					t.Errorf("pauses %v, want %v", waits, tt.wantWaits)
				}
			}
		})
	}
}

func TestRetryPolicyStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := retryPolicy{first: time.Hour, max: time.Hour, callTimeout: time.Second, now: time.Now}
	calls := 0
	err := p.do(ctx, func() time.Time { return time.Now().Add(24 * time.Hour) }, func(error, time.Duration) { cancel() }, func(context.Context) error {
		calls++
		return &engine.DatabaseError{Op: "release", Unavailable: true, Err: errors.New("timeout")}
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err %v after %d calls, want context.Canceled after 1", err, calls)
	}
}
