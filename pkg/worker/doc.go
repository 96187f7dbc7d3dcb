// Package worker is tasker's Go worker SDK: it runs the steps of tasker Tasks.
//
// A worker claims steps from one or more queues, runs the handler registered for each step's handler name, and
// reports the outcome through tasker's SQL worker protocol (docs/worker-protocol.md); the engine then enqueues the
// steps that became ready, in the same transaction. Workers need no registration and no coordinator: start as
// many as you like against the same database.
//
//	w, err := worker.Open(ctx, os.Getenv("TASKER_DATABASE_URL"), worker.Config{Queues: []string{"default"}})
//	if err != nil { ... }
//	defer w.Close()
//	w.Handle("resize", func(ctx context.Context, s worker.Step) (worker.Result, error) {
//		var in struct{ URL string }
//		if err := s.DecodeInputs(&in); err != nil {
//			return nil, worker.Permanent(err) // bad inputs will not get better
//		}
//		...
//		return map[string]any{"thumbnail": url}, nil
//	})
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	err = w.Run(ctx) // returns after a graceful drain
//
// What the worker does for you:
//
//   - Concurrency: at most Config.Slots handlers run at once. Each queue has one claim loop that asks for as many
//     steps as there are free slots in one round trip, so the worker never holds a step it cannot start. A step
//     keeps its slot until its outcome is reported, so quick handlers are claimed in the batches they are
//     reported in.
//   - Wake-up: a claim loop that found its queue empty waits; the worker LISTENs on the engine's queue channel
//     (an empty queue getting work) and claims at once, also after reporting its own successes (which may have
//     enqueued children); it also polls every Config.PollInterval, for notifications lost during a reconnection
//     and for retries whose backoff delay ended.
//   - Completions: successes are reported in batches (one transaction for all the steps that finished during
//     the previous report, or within a millisecond of each other); a success with nothing else finishing is
//     reported at once, so a chain of steps does not wait.
//   - Leases: a claim holds the step for Config.VisibilityTimeout; handlers running longer are kept alive by
//     heartbeats every Config.HeartbeatInterval. When a heartbeat finds the task cancelled (or the lease lost), the
//     handler's context is cancelled, with ErrStopped or ErrLeaseLost as its cause. A worker that dies simply
//     stops heartbeating: its steps run again elsewhere once their leases expire (at-least-once execution;
//     the engine records each state transition exactly once).
//   - Errors: a returned error is retried with the step's backoff policy; Permanent fails the step for good;
//     RetryAfter asks for a specific delay. Panics are recovered and retried.
//   - Graceful drain: when Run's context ends, the worker stops claiming, lets running handlers finish within
//     Config.DrainTimeout, then cancels the rest (cause ErrDraining) and gives their steps back without counting
//     the attempt, reports what is outstanding and removes its record.
//   - Observability: structured logs (log/slog; logr through logr.ToSlogHandler), Prometheus metrics
//     (tasker_worker_steps_claimed_total, _succeeded_total, _failed_total, _retried_total, _released_total,
//     _lost_total, tasker_worker_handler_duration_seconds, tasker_worker_in_flight,
//     tasker_worker_protocol_call_duration_seconds) and a row in tasker.workers
//     (id, queues, slots, in-flight, last heartbeat) refreshed every Config.RecordInterval.
//
// Handlers must be idempotent, or at least safe to run twice: a worker that dies after a handler's side effect
// but before its report makes the step run again.
package worker
