package engine

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

// Lease is the token of one claim of a step (a UUID on the wire). A worker presents it to complete, fail,
// heartbeat or release the step; it stops being valid when the step leaves running or is claimed again.
type Lease [16]byte

// String returns the lease in UUID form.
func (l Lease) String() string {
	var b [36]byte
	hex.Encode(b[0:8], l[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], l[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], l[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], l[8:10])
	b[23] = '-'
	hex.Encode(b[24:], l[10:])
	return string(b[:])
}

// StepID returns the id of the step the lease was issued for (leases embed it).
func (l Lease) StepID() int64 { return int64(binary.BigEndian.Uint64(l[:8])) }

// ParseLease parses the UUID form of a lease.
func ParseLease(s string) (Lease, error) {
	var u pgtype.UUID
	if err := u.Scan(s); err != nil {
		return Lease{}, fmt.Errorf("%w: lease %q is not a UUID", ErrInvalidArgument, s)
	}
	return Lease(u.Bytes), nil
}

func (l Lease) uuid() pgtype.UUID { return pgtype.UUID{Bytes: l, Valid: true} }

// ClaimedStep is a step claimed by a worker: everything its handler needs.
type ClaimedStep struct {
	// Queue is the queue the step was claimed from.
	Queue    string
	StepID   int64
	TaskID   int64
	StepName string
	Handler  string
	Inputs   json.RawMessage
	// TaskContext is the task's Context.
	TaskContext json.RawMessage
	// DependencyResults holds the result of every step this one depends on, by step name (null for a
	// dependency resolved by hand).
	DependencyResults map[string]json.RawMessage
	// Attempt is 1 for the first attempt; a re-claim after an expired lease counts as a new attempt.
	Attempt int
	Lease   Lease
	// Timeout is the step's per-attempt time limit (0: none).
	Timeout time.Duration
	// LeaseExpiresAt is when the claim lapses unless extended by Heartbeat: the message becomes visible again
	// and another worker may claim the step.
	LeaseExpiresAt time.Time
	// Item is, for an instance of a map step (StepSpec.ForEach), its element of the array (JSON), and ItemIndex
	// its position (from 0); nil and -1 for any other step.
	Item      json.RawMessage
	ItemIndex int
	// TraceContext is the task's W3C trace context, a JSON object of text propagation fields ({"traceparent":
	// "00-...", "tracestate": "..."}), or nil when the task has none (docs/tracing.md). Kept as JSON: only a
	// worker that traces decodes it.
	TraceContext json.RawMessage
	// ReadyAt is when the step became claimable (enqueued, or its retry delay ended, or its lease expired); its
	// queue wait is the claim's time minus ReadyAt. A step claimed by CompleteAndClaim as it became ready has the
	// claim's time.
	ReadyAt time.Time
}

// Claim reads up to max messages of queue (1 to 1000), claims their steps for visibility (rounded up to whole
// seconds, at least 1 s) and returns them, in one round trip. workerID (optional) is recorded with the claims.
// An empty result means there is no work right now (also when the queue does not exist yet).
func (e *Engine) Claim(ctx context.Context, queue string, max int, visibility time.Duration,
	workerID string) ([]ClaimedStep, error) {
	if err := pgmq.ValidateQueueName(queue); err != nil {
		return nil, fmt.Errorf("%w: %q is not a valid queue name", ErrInvalidArgument, queue)
	}
	if max < 1 || max > 1000 {
		return nil, fmt.Errorf("%w: max must be between 1 and 1000", ErrInvalidArgument)
	}
	vt, err := visibilitySeconds(visibility)
	if err != nil {
		return nil, err
	}
	worker := optionalText(workerID)
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	old := e.noTraceColumns.Load()
	sql := sqlClaim
	if old {
		sql = sqlClaimV14
	}
	steps, err := func() ([]ClaimedStep, error) {
		rows, err := e.pool.Query(cctx, sql, queue, max, vt, worker)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(row pgx.CollectableRow) (ClaimedStep, error) {
			var c claimedRow
			if err := row.Scan(c.dest(old)...); err != nil {
				return ClaimedStep{}, err
			}
			s, err := c.step()
			s.Queue = queue
			return s, err
		})
	}()
	if err != nil {
		if !old && undefinedColumn(err) {
			// A database the operator has not migrated to schema 17 yet: its claims have the older columns.
			e.noTraceColumns.Store(true)
			return e.Claim(ctx, queue, max, visibility, workerID)
		}
		return nil, dbError(ctx, "claim", err)
	}
	return steps, nil
}

// undefinedColumn tells whether err is PostgreSQL's undefined_column.
func undefinedColumn(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42703"
}

// visibilitySeconds is a claim's visibility timeout in whole seconds (rounded up, at least 1).
func visibilitySeconds(visibility time.Duration) (int64, error) {
	vt := int64(math.Ceil(visibility.Seconds()))
	if vt < 1 {
		vt = 1
	}
	if vt > math.MaxInt32 {
		return 0, fmt.Errorf("%w: visibility timeout too long", ErrInvalidArgument)
	}
	return vt, nil
}

func optionalText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// claimedRow receives the columns of a claimed step (claim's, and complete_and_claim's after its first three,
// which are NULL in its rows of reported leases).
type claimedRow struct {
	stepID, taskID   *int64
	name, handler    *string
	inputs, taskCtx  json.RawMessage
	deps             []byte
	attempt, timeout *int32
	lease            pgtype.UUID
	expires          *time.Time
	item             json.RawMessage
	itemIndex        *int32
	traceCtx         json.RawMessage
	readyAt          pgtype.Timestamptz
}

// dest is the scan destinations, in the order of claim's columns (without the columns of migrations 15 and 18
// with old: a database before migration 15, see withoutTraceColumns).
func (c *claimedRow) dest(old bool) []any {
	d := []any{&c.stepID, &c.taskID, &c.name, &c.handler, &c.inputs, &c.taskCtx, &c.deps, &c.attempt, &c.lease,
		&c.timeout, &c.expires, &c.item, &c.itemIndex, &c.traceCtx, &c.readyAt}
	if old {
		c.item, c.itemIndex, c.traceCtx, c.readyAt = nil, nil, nil, pgtype.Timestamptz{}
		return d[:len(d)-4]
	}
	return d
}

func (c *claimedRow) step() (ClaimedStep, error) {
	if c.stepID == nil || c.taskID == nil || c.name == nil || c.handler == nil || c.attempt == nil ||
		c.timeout == nil || c.expires == nil || !c.lease.Valid {
		return ClaimedStep{}, errors.New("claimed step with NULL columns")
	}
	s := ClaimedStep{StepID: *c.stepID, TaskID: *c.taskID, StepName: *c.name, Handler: *c.handler,
		Inputs: c.inputs, TaskContext: c.taskCtx, Attempt: int(*c.attempt), Lease: Lease(c.lease.Bytes),
		Timeout: time.Duration(*c.timeout) * time.Second, LeaseExpiresAt: *c.expires, TraceContext: c.traceCtx,
		ReadyAt: c.readyAt.Time, ItemIndex: -1}
	if c.itemIndex != nil {
		s.Item, s.ItemIndex = c.item, int(*c.itemIndex)
	}
	if err := json.Unmarshal(c.deps, &s.DependencyResults); err != nil {
		return s, err
	}
	return s, nil
}

// Complete reports that the step of lease succeeded with result (JSON; empty means null). In the same
// transaction its ready children are enqueued, its message deleted, and its task finished when nothing is left.
// A lease that is no longer valid gives ErrStaleLease and changes nothing. A result the database refuses (see
// ErrResultRefused) fails the step instead.
func (e *Engine) Complete(ctx context.Context, lease Lease, result json.RawMessage) error {
	if err := CheckResult(result); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	res, ok := jsonValue(result)
	if !ok {
		return fmt.Errorf("%w: result is not valid JSON", ErrInvalidArgument)
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var (
		accepted bool
		status   string
	)
	if err := e.pool.QueryRow(cctx, sqlComplete, lease.uuid(), res).Scan(&accepted, &status); err != nil {
		return dbError(ctx, "complete", err)
	}
	switch {
	case accepted:
		return nil
	case status == "result_refused":
		return fmt.Errorf("%w: %s", ErrResultRefused, lease)
	default:
		return fmt.Errorf("%w: %s", ErrStaleLease, lease)
	}
}

// Completion is one success reported through CompleteMany.
type Completion struct {
	Lease  Lease
	Result json.RawMessage
}

// CompleteMany reports many successes in one round trip and one transaction (see Complete). The returned slice
// has one entry per completion: nil when accepted, an error matching ErrStaleLease when rejected (ErrResultRefused
// for a result the database refused, reported alone). The error is non-nil only when the call as a whole failed
// (then nothing was recorded) — also when the database refuses a result of a batch of several: report that one
// alone (it fails its step, with the reason) and the others again.
func (e *Engine) CompleteMany(ctx context.Context, completions []Completion) ([]error, error) {
	if len(completions) == 0 {
		return nil, nil
	}
	leases, results, err := completionArgs(completions)
	if err != nil {
		return nil, err
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	rows, err := e.pool.Query(cctx, sqlCompleteMany, leases, results)
	if err != nil {
		return nil, dbError(ctx, "complete", err)
	}
	var o outcomes
	if _, err := pgx.ForEachRow(rows, []any{&o.lease, &o.accepted, &o.status}, o.add); err != nil {
		return nil, dbError(ctx, "complete", err)
	}
	return o.check(len(completions))
}

// CompleteAndClaim reports successes as CompleteMany does and, in the same transaction, claims for workerID up to
// max (0 to 1000) of the steps they made ready, as Claim would with visibility: steps of the queues of the
// reported steps, except prioritized queues (their steps go through the queue, so that a claim takes the highest
// priority first). The next step of a chain so starts one commit after its parent's report, on the same worker,
// and its message never becomes visible unless the lease expires. Ready steps beyond max are enqueued as usual.
// It returns an outcome per completion, in order (nil, or ErrStaleLease), and the claimed steps.
func (e *Engine) CompleteAndClaim(ctx context.Context, completions []Completion, max int, visibility time.Duration,
	workerID string) ([]error, []ClaimedStep, error) {
	if len(completions) == 0 {
		return nil, nil, nil
	}
	if max < 0 || max > 1000 {
		return nil, nil, fmt.Errorf("%w: max must be between 0 and 1000", ErrInvalidArgument)
	}
	if e.noCompleteClaim.Load() {
		return e.completeWithoutClaims(ctx, completions)
	}
	leases, results, err := completionArgs(completions)
	if err != nil {
		return nil, nil, err
	}
	vt, err := visibilitySeconds(visibility)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	old := e.noTraceColumns.Load()
	sql := sqlCompleteClaim
	if old {
		sql = sqlCompleteClaimV14
	}
	rows, err := e.pool.Query(cctx, sql, leases, results, max, vt, optionalText(workerID))
	if err != nil {
		if undefinedFunction(err) {
			return e.completeWithoutClaims(ctx, completions)
		}
		if !old && undefinedColumn(err) { // before migration 15: see Claim
			e.noTraceColumns.Store(true)
			return e.CompleteAndClaim(ctx, completions, max, visibility, workerID)
		}
		return nil, nil, dbError(ctx, "complete", err)
	}
	var (
		o       outcomes
		queue   *string
		c       claimedRow
		claimed []ClaimedStep
	)
	dest := append([]any{&o.lease, &o.accepted, &o.status, &queue}, c.dest(old)...)
	_, err = pgx.ForEachRow(rows, dest, func() error {
		if o.status != "claimed" {
			return o.add()
		}
		s, err := c.step()
		if queue != nil {
			s.Queue = *queue
		}
		claimed = append(claimed, s)
		return err
	})
	if err != nil {
		if undefinedFunction(err) {
			return e.completeWithoutClaims(ctx, completions)
		}
		if !old && undefinedColumn(err) { // a statement error: nothing was reported
			e.noTraceColumns.Store(true)
			return e.CompleteAndClaim(ctx, completions, max, visibility, workerID)
		}
		return nil, nil, dbError(ctx, "complete", err)
	}
	out, err := o.check(len(completions))
	if err != nil {
		return nil, nil, err
	}
	return out, claimed, nil
}

// completeWithoutClaims is CompleteAndClaim on a database that predates tasker.complete_and_claim (a worker may
// be upgraded before the operator migrates its database): it reports, and claims nothing.
func (e *Engine) completeWithoutClaims(ctx context.Context, completions []Completion) ([]error, []ClaimedStep, error) {
	e.noCompleteClaim.Store(true)
	out, err := e.CompleteMany(ctx, completions)
	return out, nil, err
}

// undefinedFunction tells whether err is PostgreSQL's undefined_function.
func undefinedFunction(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42883"
}

func completionArgs(completions []Completion) ([]pgtype.UUID, []json.RawMessage, error) {
	leases := make([]pgtype.UUID, len(completions))
	results := make([]json.RawMessage, len(completions))
	for i, c := range completions {
		leases[i] = c.Lease.uuid()
		if err := CheckResult(c.Result); err != nil {
			return nil, nil, fmt.Errorf("%w: result %d: %v", ErrInvalidArgument, i, err)
		}
		res, ok := jsonValue(c.Result)
		if !ok {
			return nil, nil, fmt.Errorf("%w: result %d is not valid JSON", ErrInvalidArgument, i)
		}
		results[i] = res
	}
	return leases, results, nil
}

// outcomes collects the per-lease rows of complete_many and complete_and_claim.
type outcomes struct {
	lease    pgtype.UUID
	accepted bool
	status   string
	out      []error
}

func (o *outcomes) add() error {
	switch {
	case o.accepted:
		o.out = append(o.out, nil)
	case o.status == "result_refused":
		o.out = append(o.out, fmt.Errorf("%w: %s", ErrResultRefused, Lease(o.lease.Bytes)))
	default:
		o.out = append(o.out, fmt.Errorf("%w: %s", ErrStaleLease, Lease(o.lease.Bytes)))
	}
	return nil
}

func (o *outcomes) check(n int) ([]error, error) {
	if len(o.out) != n {
		return nil, &DatabaseError{Op: "complete", Err: fmt.Errorf("%d results for %d completions", len(o.out), n)}
	}
	return o.out, nil
}

// Failure describes a failed attempt.
type Failure struct {
	// Message says what went wrong (shown in the task's status).
	Message string
	// Details is optional JSON recorded with the message.
	Details json.RawMessage
	// Permanent failures are not retried: the step fails, and so does its task.
	Permanent bool
	// RetryAfter, when positive, is the delay before the next attempt, instead of the step's backoff policy
	// (e.g. a rate limit's Retry-After). Millisecond precision.
	RetryAfter time.Duration
}

// FailResult tells what happened to a failed step.
type FailResult struct {
	// Retrying is true when the step will be attempted again at NextAttemptAt; false when it failed for good
	// (permanent failure or attempts exhausted), which failed its task.
	Retrying      bool
	NextAttemptAt time.Time
}

// Fail reports that the attempt of lease failed. A retryable failure with attempts left re-enqueues the step
// with a delay (f.RetryAfter, or the step's exponential backoff); otherwise the step fails, its task fails, the
// steps below it are skipped and every other unfinished step is cancelled. A lease that is no longer valid gives
// ErrStaleLease and changes nothing.
func (e *Engine) Fail(ctx context.Context, lease Lease, f Failure) (FailResult, error) {
	// A failure is recorded whatever it holds: U+0000, which jsonb cannot store, becomes U+FFFD.
	errDoc := map[string]any{"message": strings.ReplaceAll(f.Message, "\x00", "\uFFFD")}
	if len(f.Details) > 0 {
		d, ok := jsonValue(f.Details)
		if !ok {
			return FailResult{}, fmt.Errorf("%w: failure details are not valid JSON", ErrInvalidArgument)
		}
		d, err := withoutNUL(d)
		if err != nil {
			return FailResult{}, fmt.Errorf("%w: failure details: %v", ErrInvalidArgument, err)
		}
		errDoc["details"] = d
	}
	doc, err := json.Marshal(errDoc)
	if err != nil {
		return FailResult{}, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	var retryAfter *float64
	if f.RetryAfter > 0 {
		s := f.RetryAfter.Seconds()
		retryAfter = &s
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var (
		accepted bool
		status   string
		next     *time.Time
	)
	if err := e.pool.QueryRow(cctx, sqlFail, lease.uuid(), doc, !f.Permanent, retryAfter).
		Scan(&accepted, &status, &next); err != nil {
		return FailResult{}, dbError(ctx, "fail", err)
	}
	if !accepted {
		return FailResult{}, fmt.Errorf("%w: %s", ErrStaleLease, lease)
	}
	r := FailResult{Retrying: status == "retrying"}
	if next != nil {
		r.NextAttemptAt = *next
	}
	return r, nil
}

// HeartbeatResult is the answer to a heartbeat.
type HeartbeatResult struct {
	// OK: the lease is valid and now lasts until LeaseExpiresAt. A lease that has expired is never extended.
	OK             bool
	LeaseExpiresAt time.Time
	// Cancelled: the lease is not valid because the step was stopped (its task was cancelled or failed, or an
	// operator finished the step). Either way, when OK is false the handler should stop: its result will be
	// rejected.
	Cancelled bool
}

// Heartbeat extends a valid lease (and its message's visibility) to now + extend (whole seconds, at least 1).
func (e *Engine) Heartbeat(ctx context.Context, lease Lease, extend time.Duration) (HeartbeatResult, error) {
	secs := int64(math.Ceil(extend.Seconds()))
	if secs < 1 {
		secs = 1
	}
	if secs > math.MaxInt32 {
		return HeartbeatResult{}, fmt.Errorf("%w: extension too long", ErrInvalidArgument)
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var (
		r       HeartbeatResult
		expires *time.Time
	)
	if err := e.pool.QueryRow(cctx, sqlHeartbeat, lease.uuid(), secs).Scan(&r.OK, &r.Cancelled, &expires); err != nil {
		return HeartbeatResult{}, dbError(ctx, "heartbeat", err)
	}
	if expires != nil {
		r.LeaseExpiresAt = *expires
	}
	return r, nil
}

// Release gives a claimed step back (graceful shutdown): the step is enqueued again, its message visible at
// once, and the attempt is not counted. ErrStaleLease when the lease is no longer valid. A step released 100 times
// already (tasker.max_releases) is not given back for free: the release counts as a retryable failure (retried, or
// failed with its task when no attempt is left), so that a step its workers are always stopped on ends; Release
// then returns ErrReleaseCounted.
func (e *Engine) Release(ctx context.Context, lease Lease) error {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var (
		accepted bool
		status   string
	)
	if err := e.pool.QueryRow(cctx, sqlRelease, lease.uuid()).Scan(&accepted, &status); err != nil {
		return dbError(ctx, "release", err)
	}
	if !accepted {
		return fmt.Errorf("%w: %s", ErrStaleLease, lease)
	}
	if status != "released" {
		return fmt.Errorf("%w: the step was given back too often (now %s)", ErrReleaseCounted, status)
	}
	return nil
}

// WorkerInfo is a worker's report about itself (RecordWorker).
type WorkerInfo struct {
	ID       string
	Queues   []string
	Slots    int
	InFlight int
	Hostname string
	Metadata json.RawMessage
}

// RecordWorker upserts a worker's self-report in tasker.workers (informational: claims never require it).
func (e *Engine) RecordWorker(ctx context.Context, w WorkerInfo) error {
	if w.ID == "" || len(w.ID) > 255 {
		return fmt.Errorf("%w: worker id must be 1 to 255 characters", ErrInvalidArgument)
	}
	meta, ok := jsonValue(w.Metadata)
	if !ok {
		return fmt.Errorf("%w: worker metadata is not valid JSON", ErrInvalidArgument)
	}
	queues := w.Queues
	if queues == nil {
		queues = []string{}
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	_, err := e.pool.Exec(cctx, sqlWorkerHeartbeat, w.ID, queues, w.Slots, w.InFlight, w.Hostname, meta)
	return dbError(ctx, "record worker", err)
}

// WorkerStopped removes a worker's record (a clean shutdown).
func (e *Engine) WorkerStopped(ctx context.Context, id string) error {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	_, err := e.pool.Exec(cctx, sqlWorkerStopped, id)
	return dbError(ctx, "worker stopped", err)
}

var errNoRows = pgx.ErrNoRows

func isNoRows(err error) bool { return errors.Is(err, errNoRows) }
