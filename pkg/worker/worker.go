package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// Worker claims steps from its queues and runs their handlers. Create it with New or Open, register handlers with
// Handle, then call Run once.
type Worker struct {
	cfg      Config
	eng      *engine.Engine
	pool     *pgxpool.Pool
	ownsPool bool
	log      *slog.Logger
	metrics  *metrics
	hostname string

	mu       sync.Mutex
	handlers map[string]HandlerFunc
	started  bool

	// slots are the free handler slots. A step holds its slot from its claim until its outcome is reported.
	slots *slots
	// wake has a one-element buffer per queue: a notification that arrives while the queue's claimer is busy
	// is kept, so the claimer claims again when it is done.
	wake map[string]chan struct{}

	jobsMu    sync.Mutex
	jobs      map[*job]struct{}
	handlerWG sync.WaitGroup

	completer *completer

	// tracer makes the spans of step attempts; nil when the worker does not trace (Config.TracerProvider).
	tracer trace.Tracer

	// claiming is true while Run's context lasts: the completer claims after a report only then. startMu orders
	// the end of claiming with the starts of steps that reports claimed, so that the drain sees every handler.
	claiming atomic.Bool
	startMu  sync.Mutex
}

// New returns a worker that works on pool (the pool must reach a database migrated by the operator). The pool
// should have room for one connection per queue plus a few for completions, heartbeats and failures; the worker
// also opens one dedicated connection for LISTEN. Closing the pool is the caller's business.
func New(pool *pgxpool.Pool, cfg Config) (*Worker, error) {
	if pool == nil {
		return nil, errors.New("worker: nil pool")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("worker: register metrics: %w", err)
	}
	host, _ := os.Hostname()
	w := &Worker{
		cfg:      cfg,
		eng:      engine.New(pool, engine.Options{}),
		pool:     pool,
		log:      cfg.Logger.With("worker", cfg.ID),
		metrics:  m,
		hostname: host,
		handlers: map[string]HandlerFunc{},
		slots:    newSlots(cfg.Slots),
		wake:     make(map[string]chan struct{}, len(cfg.Queues)),
		jobs:     map[*job]struct{}{},
	}
	for _, q := range cfg.Queues {
		w.wake[q] = make(chan struct{}, 1)
	}
	w.completer = newCompleter(w)
	w.tracer = stepTracer(cfg.TracerProvider)
	return w, nil
}

// Open connects to the database at url (a PostgreSQL URL or key=value string) with a pool sized for the worker,
// and returns a worker that owns it: Close closes it.
func Open(ctx context.Context, url string, cfg Config) (*Worker, error) {
	checked, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	conns := int32(len(checked.Queues) + 2 + min(checked.Slots, 8))
	pool, err := store.Open(ctx, url, store.Options{MaxConns: conns, ApplicationName: "tasker-worker"})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w, err := New(pool, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	w.ownsPool = true
	return w, nil
}

// Close releases what Open acquired (the pool). Call it after Run returned. It does nothing for a worker made
// with New.
func (w *Worker) Close() {
	if w.ownsPool {
		w.pool.Close()
	}
}

// ID returns the worker's id (Config.ID or its default).
func (w *Worker) ID() string { return w.cfg.ID }

// Handle registers h for steps whose handler is name. Register every handler before Run; registering twice the
// same name, or after Run started, panics (a programming error). A step whose handler this worker does not know
// fails retryably, so that a worker that knows it (during a rolling upgrade, say) may take it.
func (w *Worker) Handle(name string, h HandlerFunc) {
	if name == "" || h == nil {
		panic("worker: Handle needs a name and a handler")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		panic("worker: Handle called after Run")
	}
	if _, dup := w.handlers[name]; dup {
		panic(fmt.Sprintf("worker: handler %q registered twice", name))
	}
	w.handlers[name] = h
}

// Run claims and runs steps until ctx ends, then drains: it stops claiming, lets in-flight handlers finish within
// Config.DrainTimeout, gives back (releases) steps it claimed but did not start, cancels the handlers still
// running at the deadline and releases their steps, reports the outstanding results, removes the worker's record
// and returns nil. Database outages do not stop Run: it retries with backoff and logs. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("worker: Run called twice")
	}
	w.started = true
	w.handlers = maps.Clone(w.handlers)
	w.mu.Unlock()

	// Everything but claiming outlives ctx: the drain needs the listener-free rest of the machinery.
	bg := context.WithoutCancel(ctx)
	svcCtx, stopServices := context.WithCancel(bg)
	var services sync.WaitGroup
	services.Go(func() {
		_ = w.eng.Listen(svcCtx, engine.Notifications{
			OnQueue:   w.wakeQueue,
			OnConnect: w.wakeAll, // notifications may have been lost while disconnected
		})
	})
	services.Go(func() { w.recordLoop(svcCtx) })
	completerDone := make(chan struct{})
	go func() {
		w.completer.run()
		close(completerDone)
	}()

	w.log.Info("worker started", "queues", w.cfg.Queues, "slots", w.cfg.Slots,
		"visibilityTimeout", w.cfg.VisibilityTimeout, "handlers", len(w.handlers))
	w.claiming.Store(true)
	var claimers sync.WaitGroup
	for _, q := range w.cfg.Queues {
		claimers.Go(func() { w.claimLoop(ctx, q) })
	}

	<-ctx.Done()
	start := time.Now()
	w.startMu.Lock()
	w.claiming.Store(false)
	w.startMu.Unlock()
	claimers.Wait()
	w.log.Info("draining", "inFlight", w.inFlight(), "drainTimeout", w.cfg.DrainTimeout)
	w.drain()
	w.completer.stop()
	<-completerDone
	stopServices()
	services.Wait()

	sctx, cancel := context.WithTimeout(bg, 5*time.Second)
	if err := w.eng.WorkerStopped(sctx, w.cfg.ID); err != nil {
		w.log.Warn("could not remove the worker's record", "err", err)
	}
	cancel()
	w.log.Info("worker stopped", "drainedIn", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainCancelGrace is how long handlers cancelled at the drain deadline get to return before their steps are
// released anyway.
const drainCancelGrace = 2 * time.Second

// drain waits for the in-flight handlers (claimers have stopped). At the deadline it cancels them; those that
// return with an error have their steps released by settle; the steps of those that do not return at all are
// released here, and their outcome will be ignored.
func (w *Worker) drain() {
	done := make(chan struct{})
	go func() {
		w.handlerWG.Wait()
		close(done)
	}()
	timer := time.NewTimer(w.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	jobs := w.runningJobs()
	w.log.Warn("drain timeout reached: cancelling handlers still running", "count", len(jobs))
	for _, j := range jobs {
		j.cancel(ErrDraining)
	}
	select {
	case <-done:
		return
	case <-time.After(drainCancelGrace):
	}
	for _, j := range w.runningJobs() {
		if j.abandon() {
			w.log.Warn("handler ignores its context: releasing its step anyway", j.attrs()...)
			w.release(j)
		}
	}
	// Jobs that returned in the meantime are settling: wait for them (the abandoned ones never count).
	deadline := time.Now().Add(10 * time.Second)
	for w.settling() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *Worker) wakeQueue(queue string) {
	if ch, ok := w.wake[queue]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *Worker) wakeAll() {
	for q := range w.wake {
		w.wakeQueue(q)
	}
}

// claimLoop claims steps of one queue while ctx lasts: as many as there are free slots, at least one, per round
// trip. When a claim finds nothing it waits for a notification, a report of this worker's (which may have
// enqueued children) or the poll interval.
func (w *Worker) claimLoop(ctx context.Context, queue string) {
	log := w.log.With("queue", queue)
	wake := w.wake[queue]
	poll := time.NewTimer(w.cfg.PollInterval)
	defer poll.Stop()
	backoff := 100 * time.Millisecond
	batch := min(w.cfg.Slots, maxClaimBatch)
	bg := context.WithoutCancel(ctx)
	for {
		// Every free slot (waiting for one at least).
		n := w.slots.take(ctx, batch)
		if n == 0 {
			return
		}
		// A claim that started runs to its end even if ctx ends meanwhile: what it got is given back below,
		// rather than left to expire (which would count an attempt).
		cctx, cancel := context.WithTimeout(bg, 30*time.Second)
		began := time.Now()
		claimed, err := w.eng.Claim(cctx, queue, n, w.cfg.VisibilityTimeout, w.cfg.ID)
		observeSince(w.metrics.claimCalls, began)
		cancel()
		w.slots.give(n - len(claimed))
		if err != nil {
			log.Error("claim failed", "err", err, "retryIn", backoff)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if ctx.Err() != nil {
			for _, c := range claimed {
				j := w.newJob(queue, c)
				w.release(j)
				w.slots.give(1)
			}
			return
		}
		for _, c := range claimed {
			w.start(w.newJob(queue, c))
		}
		if len(claimed) > 0 {
			// There may be more (a claim can return fewer than it read: it drops stale messages): claim again as
			// soon as a slot is free. Only a claim that finds nothing makes the worker wait, because only a
			// queue without visible work is announced when work arrives (see engine.ChannelQueue).
			continue
		}
		// The queue is dry: wait for work.
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(w.cfg.PollInterval)
		select {
		case <-wake:
		case <-poll.C:
		case <-ctx.Done():
			return
		}
	}
}

// startClaimed starts steps that a report claimed (see completer.flush) and returns how many it started. Steps
// claimed as the worker stopped claiming are given back, like a claim loop's late claims.
func (w *Worker) startClaimed(steps []engine.ClaimedStep) int {
	if len(steps) == 0 {
		return 0
	}
	w.startMu.Lock()
	defer w.startMu.Unlock()
	if !w.claiming.Load() {
		for _, c := range steps {
			w.release(w.newJob(c.Queue, c))
		}
		return 0
	}
	for _, c := range steps {
		w.start(w.newJob(c.Queue, c))
	}
	return len(steps)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// job is one claimed step and its handler's run.
type job struct {
	w      *Worker
	queue  string
	claim  engine.ClaimedStep
	step   Step
	ctx    context.Context
	cancel context.CancelCauseFunc
	stopTO context.CancelFunc

	startedAt time.Time

	mu        sync.Mutex
	finished  bool // the handler returned
	abandoned bool // the drain gave the step back: ignore the outcome
	timer     *time.Timer
	expires   time.Time

	// span is the attempt's span while the worker traces, until the outcome is known (endSpan).
	span trace.Span
}

func (w *Worker) newJob(queue string, c engine.ClaimedStep) *job {
	j := &job{
		w:     w,
		queue: queue,
		claim: c,
		step: Step{
			TaskID:            c.TaskID,
			StepID:            c.StepID,
			Name:              c.StepName,
			Handler:           c.Handler,
			Queue:             queue,
			Inputs:            c.Inputs,
			TaskContext:       c.TaskContext,
			DependencyResults: c.DependencyResults,
			Attempt:           c.Attempt,
			Timeout:           c.Timeout,
			WorkerID:          w.cfg.ID,
			Item:              c.Item,
			ItemIndex:         c.ItemIndex,
		},
		expires: c.LeaseExpiresAt,
	}
	if j.step.DependencyResults == nil {
		j.step.DependencyResults = map[string]json.RawMessage{}
	}
	return j
}

func (j *job) attrs() []any {
	return []any{"queue", j.queue, "taskID", j.claim.TaskID, "step", j.claim.StepName, "handler", j.claim.Handler,
		"attempt", j.claim.Attempt}
}

// abandon marks a job whose handler has not returned as given up; false if it has returned.
func (j *job) abandon() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.finished {
		return false
	}
	j.abandoned = true
	return true
}

// finish records that the handler returned, stops the heartbeats and tells whether the drain gave up the job.
func (j *job) finish() (abandoned bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.finished = true
	if j.timer != nil {
		j.timer.Stop()
	}
	return j.abandoned
}

// start runs a claimed step's handler on a goroutine (the caller holds a slot for it).
func (w *Worker) start(j *job) {
	w.metrics.claimed.WithLabelValues(j.queue).Inc()
	j.startedAt = time.Now()
	// Handlers outlive Run's context (they finish during the drain); they are stopped through their own.
	ctx, cancel := context.WithCancelCause(context.Background())
	j.cancel = cancel
	j.ctx, j.stopTO = ctx, func() {}
	if j.claim.Timeout > 0 {
		j.ctx, j.stopTO = context.WithTimeoutCause(ctx, j.claim.Timeout, ErrStepTimeout)
	}
	if w.tracer != nil {
		j.startSpan(w.tracer, j.startedAt)
		j.ctx = trace.ContextWithSpan(j.ctx, j.span)
	}
	w.jobsMu.Lock()
	w.jobs[j] = struct{}{}
	w.jobsMu.Unlock()
	w.metrics.inFlight.Inc()
	w.handlerWG.Add(1)
	go w.execute(j)
}

func (w *Worker) runningJobs() []*job {
	w.jobsMu.Lock()
	defer w.jobsMu.Unlock()
	out := make([]*job, 0, len(w.jobs))
	for j := range w.jobs {
		out = append(out, j)
	}
	return out
}

func (w *Worker) inFlight() int {
	w.jobsMu.Lock()
	defer w.jobsMu.Unlock()
	return len(w.jobs)
}

// runningSince counts handlers started after t that have not returned yet.
func (w *Worker) runningSince(t time.Time) int {
	n := 0
	for _, j := range w.runningJobs() {
		if j.startedAt.After(t) {
			j.mu.Lock()
			if !j.finished {
				n++
			}
			j.mu.Unlock()
		}
	}
	return n
}

// settling counts jobs whose outcome is still to be reported (not abandoned).
func (w *Worker) settling() int {
	n := 0
	for _, j := range w.runningJobs() {
		j.mu.Lock()
		if !j.abandoned {
			n++
		}
		j.mu.Unlock()
	}
	return n
}

func (w *Worker) execute(j *job) {
	defer w.handlerWG.Done()
	h := w.handlers[j.claim.Handler]
	var (
		res Result
		err error
	)
	begin := time.Now()
	if h == nil {
		err = fmt.Errorf("no handler %q registered on worker %s", j.claim.Handler, w.cfg.ID)
		w.log.Warn("step has an unknown handler", j.attrs()...)
	} else {
		j.startHeartbeats()
		res, err = callHandler(h, j)
		w.metrics.duration.WithLabelValues(j.claim.Handler).Observe(time.Since(begin).Seconds())
	}
	cause := context.Cause(j.ctx)
	abandoned := j.finish()
	j.stopTO()
	j.cancel(context.Canceled)
	reporting := false
	if !abandoned {
		reporting = w.settle(j, res, err, cause)
	}
	w.jobsMu.Lock()
	delete(w.jobs, j)
	w.jobsMu.Unlock()
	w.metrics.inFlight.Dec()
	if !reporting {
		w.slots.give(1)
	}
}

// panicError is a recovered handler panic.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("handler panicked: %v", p.value) }

func callHandler(h HandlerFunc, j *job) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return h(j.ctx, j.step)
}

// settle reports a handler's outcome. It returns true when a success was handed to the completer, which then gives
// the step's slot back once the success is reported (so that quick handlers' slots come back, and are claimed
// again, in the batches their successes are reported in).
func (w *Worker) settle(j *job, res Result, err error, cause error) bool {
	switch {
	case errors.Is(cause, ErrStopped) || errors.Is(cause, ErrLeaseLost):
		// Whatever we would report is rejected: the step is no longer ours.
		w.metrics.lost.WithLabelValues(j.queue, j.claim.Handler).Inc()
		w.log.Info("discarding the outcome of a stopped step", append(j.attrs(), "cause", cause)...)
		j.endSpan(OutcomeStopped, cause)
	case err == nil:
		raw, encErr := encodeResult(res)
		if encErr != nil {
			w.fail(j, Permanent(encErr))
			return false
		}
		w.completer.add(j, raw)
		return true
	case errors.Is(cause, ErrDraining):
		if err != nil && j.span != nil {
			j.span.RecordError(err) // endSpan is release's
		}
		w.release(j)
	default:
		w.fail(j, err)
	}
	return false
}

// maxErrorMessage bounds the error message stored with a failed attempt.
const maxErrorMessage = 4096

func encodeResult(res Result) (json.RawMessage, error) {
	switch r := res.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if len(r) > 0 && !json.Valid(r) {
			return nil, errors.New("handler returned a json.RawMessage that is not valid JSON")
		}
		if err := engine.CheckResult(r); err != nil {
			return nil, fmt.Errorf("the handler's result cannot be recorded: %w", err)
		}
		return r, nil
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode the handler's result: %w", err)
	}
	if err := engine.CheckResult(raw); err != nil {
		return nil, fmt.Errorf("the handler's result cannot be recorded: %w", err)
	}
	return raw, nil
}

func (w *Worker) fail(j *job, herr error) {
	msg := herr.Error()
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage] + "..."
	}
	f := engine.Failure{Message: msg, Permanent: IsPermanent(herr)}
	if d, ok := RetryDelay(herr); ok {
		f.RetryAfter = d
	}
	var p *panicError
	if errors.As(herr, &p) {
		stack := string(p.stack)
		if len(stack) > 8192 {
			stack = stack[:8192]
		}
		f.Details, _ = json.Marshal(map[string]any{"panic": true, "stack": stack})
	}
	var r engine.FailResult
	err := w.retryDB(j, func(ctx context.Context) error {
		began := time.Now()
		var err error
		r, err = w.eng.Fail(ctx, j.claim.Lease, f)
		observeSince(w.metrics.failCalls, began)
		return err
	})
	attrs := append(j.attrs(), "err", msg)
	switch {
	case errors.Is(err, engine.ErrStaleLease):
		w.metrics.lost.WithLabelValues(j.queue, j.claim.Handler).Inc()
		w.log.Info("failure not recorded: the lease is no longer valid", attrs...)
		j.endSpan(OutcomeStaleLease, herr)
	case err != nil:
		w.log.Error("could not report a failure (the step will run again when its lease expires)",
			append(attrs, "dbErr", err)...)
		j.endSpan(OutcomeUnreported, herr)
	case r.Retrying:
		w.metrics.retried.WithLabelValues(j.queue, j.claim.Handler).Inc()
		w.log.Info("step failed, will retry", append(attrs, "nextAttemptAt", r.NextAttemptAt)...)
		j.endSpan(OutcomeRetrying, herr)
	default:
		w.metrics.failed.WithLabelValues(j.queue, j.claim.Handler).Inc()
		w.log.Warn("step failed", append(attrs, "permanent", f.Permanent)...)
		j.endSpan(OutcomeFailed, herr)
	}
}

// release gives a step back without counting its attempt.
func (w *Worker) release(j *job) {
	err := w.retryDB(j, func(ctx context.Context) error { return w.eng.Release(ctx, j.claim.Lease) })
	switch {
	case errors.Is(err, engine.ErrStaleLease):
		w.log.Info("release not needed: the lease is no longer valid", j.attrs()...)
		j.endSpan(OutcomeStaleLease, nil)
	case errors.Is(err, engine.ErrReleaseCounted):
		w.log.Warn("step released too often: the release counted as a failed attempt", append(j.attrs(), "err", err)...)
		j.endSpan(OutcomeRetrying, err)
	case err != nil:
		w.log.Error("could not release a step (it runs again when its lease expires)", append(j.attrs(), "err", err)...)
		j.endSpan(OutcomeUnreported, err)
	default:
		w.metrics.released.WithLabelValues(j.queue).Inc()
		w.log.Info("step released", j.attrs()...)
		j.endSpan(OutcomeReleased, nil)
	}
}

// retryDB runs a protocol call, retrying while the database is unavailable and the lease may still be valid.
func (w *Worker) retryDB(j *job, call func(context.Context) error) error {
	return defaultRetry.do(context.Background(), func() time.Time {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.expires
	}, nil, call)
}

// startHeartbeats extends the lease every HeartbeatInterval while the handler runs.
func (j *job) startHeartbeats() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.timer = time.AfterFunc(j.w.cfg.HeartbeatInterval, j.beat)
}

func (j *job) beat() {
	w := j.w
	j.mu.Lock()
	if j.finished {
		j.mu.Unlock()
		return
	}
	j.mu.Unlock()

	interval := w.cfg.HeartbeatInterval
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), min(interval, 10*time.Second))
	r, err := w.eng.Heartbeat(ctx, j.claim.Lease, w.cfg.VisibilityTimeout)
	cancel()
	next := max(0, interval-time.Since(began)) // fixed rate: a slow round trip does not stretch the interval
	switch {
	case err != nil:
		j.mu.Lock()
		expired := time.Now().After(j.expires)
		j.mu.Unlock()
		if expired {
			w.log.Warn("lease expired: heartbeats failed; cancelling the handler", append(j.attrs(), "err", err)...)
			j.cancel(ErrLeaseLost)
			return
		}
		w.log.Warn("heartbeat failed", append(j.attrs(), "err", err)...)
		next = min(interval, time.Second)
	case !r.OK && r.Cancelled:
		w.log.Info("step stopped while running: cancelling the handler", j.attrs()...)
		j.cancel(ErrStopped)
		return
	case !r.OK:
		w.log.Warn("lease lost: cancelling the handler", j.attrs()...)
		j.cancel(ErrLeaseLost)
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err == nil {
		j.expires = r.LeaseExpiresAt
	}
	if !j.finished {
		j.timer.Reset(next)
	}
}

// recordLoop reports the worker in tasker.workers every RecordInterval.
func (w *Worker) recordLoop(ctx context.Context) {
	meta, _ := json.Marshal(map[string]any{"pid": os.Getpid()})
	t := time.NewTicker(w.cfg.RecordInterval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.eng.RecordWorker(rctx, engine.WorkerInfo{
			ID: w.cfg.ID, Queues: w.cfg.Queues, Slots: w.cfg.Slots, InFlight: w.inFlight(),
			Hostname: w.hostname, Metadata: meta,
		})
		cancel()
		if err != nil && ctx.Err() == nil {
			w.log.Warn("could not record the worker", "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
