package pgmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what the client runs its statements on: *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx all
// satisfy it, so every method can take part in a caller's transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrQueueNotFound is returned (wrapped, together with the server's error) when an operation names a queue
// whose table does not exist (SQLSTATE 42P01 on pgmq.q_<name> or pgmq.a_<name>).
var ErrQueueNotFound = errors.New("pgmq: queue not found")

// ErrInvalidQueueName is returned (wrapped) by ValidateQueueName and by every method given a name it rejects.
var ErrInvalidQueueName = errors.New("pgmq: invalid queue name")

// MaxQueueNameLength is the longest queue name the project allows (pgmq itself allows 47).
const MaxQueueNameLength = 40

var queueNameRE = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

// ValidateQueueName applies the project's queue-name rule, stricter than pgmq's: 1 to 40 characters out of
// lower-case ASCII letters, digits and '_' (^[a-z0-9_]{1,40}$). Such a name never needs quoting, is its own
// lower-cased table suffix, and leaves room under pgmq's 47-character limit.
func ValidateQueueName(name string) error {
	if !queueNameRE.MatchString(name) {
		return fmt.Errorf("%w %q: must match ^[a-z0-9_]{1,40}$ (1 to 40 characters: a-z, 0-9, _)",
			ErrInvalidQueueName, name)
	}
	return nil
}

// Message is a row of a queue, as read, popped or re-timed.
type Message struct {
	ID         int64
	ReadCount  int
	EnqueuedAt time.Time
	// LastReadAt is when the message was last read; nil if never, and always nil on pgmq < 1.8.1, which does not
	// record it.
	LastReadAt *time.Time
	// VT is when the message becomes (or became) visible to readers.
	VT      time.Time
	Message json.RawMessage
	// Headers is nil when the message has none.
	Headers json.RawMessage
}

// QueueInfo is a row of pgmq.list_queues().
type QueueInfo struct {
	Name          string
	IsPartitioned bool
	IsUnlogged    bool
	CreatedAt     time.Time
}

// Metrics is a row of pgmq.metrics(). The two ages are nil when the queue is empty.
type Metrics struct {
	QueueName string
	// QueueLength counts every message in the queue, visible or not.
	QueueLength int64
	// QueueVisibleLength counts the messages a read would find now (vt <= now()).
	QueueVisibleLength int64
	NewestMsgAgeSec    *int
	OldestMsgAgeSec    *int
	// TotalMessages is the number of ids the queue has ever issued (purges and rollbacks do not give ids back).
	TotalMessages int64
	ScrapeTime    time.Time
}

// Client calls pgmq's SQL functions. It holds no connection of its own: it runs every statement on the DBTX it
// was built with, so a Client built on a pgx.Tx works inside that transaction.
//
// Time arguments: pgmq counts whole seconds. Every duration (delay, visibility timeout, max poll) is rounded UP
// to whole seconds (1ms -> 1s, 1.2s -> 2s), so a message is never visible earlier than asked; zero and negative
// durations mean 0. The poll interval is rounded up to whole milliseconds.
//
// A Client is safe for concurrent use when its DBTX is (a pool is; a conn or tx is not).
type Client struct {
	db DBTX
	// shape caches the message queries built for the server's pgmq.message_record layout; shared by WithDB.
	shape *atomic.Pointer[messageQueries]
}

// New returns a Client that runs its statements on db.
func New(db DBTX) *Client {
	return &Client{db: db, shape: new(atomic.Pointer[messageQueries])}
}

// WithDB returns a Client running on db (typically a pgx.Tx) that shares c's knowledge of the server's pgmq
// layout, so a per-transaction client costs no extra round trip.
func (c *Client) WithDB(db DBTX) *Client {
	return &Client{db: db, shape: c.shape}
}

// ---- queue lifecycle ----

// CreateQueue creates a queue (pgmq.create). Idempotent.
func (c *Client) CreateQueue(ctx context.Context, name string) error {
	if err := ValidateQueueName(name); err != nil {
		return err
	}
	if _, err := c.db.Exec(ctx, `SELECT pgmq.create($1::text)`, name); err != nil {
		return wrapErr("create", name, err)
	}
	return nil
}

// DropQueue drops a queue and its archive (pgmq.drop_queue). It returns false if the queue did not exist.
func (c *Client) DropQueue(ctx context.Context, name string) (bool, error) {
	if err := ValidateQueueName(name); err != nil {
		return false, err
	}
	var dropped bool
	if err := c.db.QueryRow(ctx, `SELECT pgmq.drop_queue($1::text)`, name).Scan(&dropped); err != nil {
		return false, wrapErr("drop_queue", name, err)
	}
	return dropped, nil
}

// PurgeQueue deletes every message of a queue and returns how many (pgmq.purge_queue). Ids are not reset.
func (c *Client) PurgeQueue(ctx context.Context, name string) (int64, error) {
	if err := ValidateQueueName(name); err != nil {
		return 0, err
	}
	var n int64
	if err := c.db.QueryRow(ctx, `SELECT pgmq.purge_queue($1::text)`, name).Scan(&n); err != nil {
		return 0, wrapErr("purge_queue", name, err)
	}
	return n, nil
}

// ListQueues lists the queues (pgmq.list_queues), ordered by name.
func (c *Client) ListQueues(ctx context.Context) ([]QueueInfo, error) {
	rows, err := c.db.Query(ctx, `
		SELECT q.queue_name::text, q.is_partitioned, q.is_unlogged, q.created_at
		FROM pgmq.list_queues() AS q
		ORDER BY q.queue_name`)
	if err != nil {
		return nil, wrapErr("list_queues", "", err)
	}
	queues, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (QueueInfo, error) {
		var q QueueInfo
		err := row.Scan(&q.Name, &q.IsPartitioned, &q.IsUnlogged, &q.CreatedAt)
		return q, err
	})
	if err != nil {
		return nil, wrapErr("list_queues", "", err)
	}
	return queues, nil
}

// ---- producing ----

// Send enqueues msg, visible after delay (rounded up to whole seconds; <= 0 means now), and returns its id.
func (c *Client) Send(ctx context.Context, name string, msg json.RawMessage, delay time.Duration) (int64, error) {
	if err := ValidateQueueName(name); err != nil {
		return 0, err
	}
	secs, err := seconds("delay", delay)
	if err != nil {
		return 0, err
	}
	var id int64
	err = c.db.QueryRow(ctx, `SELECT pgmq.send($1::text, $2::jsonb, $3::integer)`, name, msg, secs).Scan(&id)
	if err != nil {
		return 0, wrapErr("send", name, err)
	}
	return id, nil
}

// SendAt enqueues msg, visible from at, and returns its id.
func (c *Client) SendAt(ctx context.Context, name string, msg json.RawMessage, at time.Time) (int64, error) {
	if err := ValidateQueueName(name); err != nil {
		return 0, err
	}
	var id int64
	err := c.db.QueryRow(ctx, `SELECT pgmq.send($1::text, $2::jsonb, $3::timestamptz)`, name, msg, at).Scan(&id)
	if err != nil {
		return 0, wrapErr("send", name, err)
	}
	return id, nil
}

// SendWithHeaders is Send with message headers (a JSON object, or nil for none).
func (c *Client) SendWithHeaders(ctx context.Context, name string, msg, headers json.RawMessage,
	delay time.Duration) (int64, error) {
	if err := ValidateQueueName(name); err != nil {
		return 0, err
	}
	secs, err := seconds("delay", delay)
	if err != nil {
		return 0, err
	}
	var id int64
	err = c.db.QueryRow(ctx, `SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb, $4::integer)`,
		name, msg, headers, secs).Scan(&id)
	if err != nil {
		return 0, wrapErr("send", name, err)
	}
	return id, nil
}

// SendBatch enqueues msgs in one statement, visible after delay, and returns their ids in the order of msgs.
// An empty msgs sends nothing and returns no ids, without a round trip (pgmq >= 1.11 would reject it).
func (c *Client) SendBatch(ctx context.Context, name string, msgs []json.RawMessage,
	delay time.Duration) ([]int64, error) {
	if err := ValidateQueueName(name); err != nil {
		return nil, err
	}
	secs, err := seconds("delay", delay)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	return c.ids(ctx, "send_batch", name,
		`SELECT b.msg_id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::integer) AS b(msg_id)`, name, msgs, secs)
}

// SendBatchWithHeaders is SendBatch with one headers object per message (headers[i] belongs to msgs[i]; a nil
// entry means none). The lengths must match.
func (c *Client) SendBatchWithHeaders(ctx context.Context, name string, msgs, headers []json.RawMessage,
	delay time.Duration) ([]int64, error) {
	if err := ValidateQueueName(name); err != nil {
		return nil, err
	}
	secs, err := seconds("delay", delay)
	if err != nil {
		return nil, err
	}
	if len(headers) != len(msgs) {
		return nil, fmt.Errorf("pgmq: send_batch: headers array length (%d) must match msgs array length (%d)",
			len(headers), len(msgs))
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	return c.ids(ctx, "send_batch", name,
		`SELECT b.msg_id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::integer) AS b(msg_id)`,
		name, msgs, headers, secs)
}

// ---- consuming ----

// Read takes up to qty visible messages, oldest id first, skipping messages other transactions hold, and hides
// them for vt (rounded up to whole seconds). Messages come back in id order; none is not an error.
func (c *Client) Read(ctx context.Context, name string, vt time.Duration, qty int) ([]Message, error) {
	if err := ValidateQueueName(name); err != nil {
		return nil, err
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, err
	}
	n, err := quantity(qty)
	if err != nil {
		return nil, err
	}
	q, err := c.queries(ctx)
	if err != nil {
		return nil, err
	}
	return c.messages(ctx, "read", name, q.read, name, vts, n)
}

// ReadWithPoll is Read that waits, on the server, up to maxPoll (rounded up to whole seconds) for a message to
// become available, retrying every pollInterval (rounded up to whole milliseconds; <= 0 means pgmq's default of
// 100ms). It returns as soon as a read finds at least one message. ctx cancels the wait.
func (c *Client) ReadWithPoll(ctx context.Context, name string, vt time.Duration, qty int,
	maxPoll, pollInterval time.Duration) ([]Message, error) {
	if err := ValidateQueueName(name); err != nil {
		return nil, err
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, err
	}
	n, err := quantity(qty)
	if err != nil {
		return nil, err
	}
	pollSecs, err := seconds("max poll", maxPoll)
	if err != nil {
		return nil, err
	}
	intervalMs := int32(100)
	if pollInterval > 0 {
		ms := pollInterval / time.Millisecond
		if pollInterval%time.Millisecond != 0 {
			ms++
		}
		if ms > math.MaxInt32 {
			return nil, fmt.Errorf("pgmq: poll interval %v is too long", pollInterval)
		}
		intervalMs = int32(ms)
	}
	q, err := c.queries(ctx)
	if err != nil {
		return nil, err
	}
	return c.messages(ctx, "read_with_poll", name, q.readWithPoll, name, vts, n, pollSecs, intervalMs)
}

// Pop reads and deletes up to qty visible messages in one statement (at-most-once delivery). read_ct is not
// incremented. qty > 1 needs pgmq >= 1.7 (or the compatible schema); qty == 1 works on every version.
func (c *Client) Pop(ctx context.Context, name string, qty int) ([]Message, error) {
	if err := ValidateQueueName(name); err != nil {
		return nil, err
	}
	n, err := quantity(qty)
	if err != nil {
		return nil, err
	}
	q, err := c.queries(ctx)
	if err != nil {
		return nil, err
	}
	if n == 1 {
		return c.messages(ctx, "pop", name, q.pop1, name)
	}
	return c.messages(ctx, "pop", name, q.popN, name, n)
}

// Delete removes a message. It returns false if there was no such message.
func (c *Client) Delete(ctx context.Context, name string, id int64) (bool, error) {
	return c.boolCall(ctx, "delete", name, `SELECT pgmq.delete($1::text, $2::bigint)`, id)
}

// DeleteBatch removes messages and returns the ids it removed (ascending); unknown ids are left out. An empty
// ids returns nothing without a round trip.
func (c *Client) DeleteBatch(ctx context.Context, name string, ids []int64) ([]int64, error) {
	return c.idsOf(ctx, "delete", name,
		`SELECT d.msg_id FROM pgmq.delete($1::text, $2::bigint[]) AS d(msg_id) ORDER BY d.msg_id`, ids)
}

// Archive moves a message to the queue's archive table. It returns false if there was no such message.
func (c *Client) Archive(ctx context.Context, name string, id int64) (bool, error) {
	return c.boolCall(ctx, "archive", name, `SELECT pgmq.archive($1::text, $2::bigint)`, id)
}

// ArchiveBatch moves messages to the archive and returns the ids it moved (ascending). An empty ids returns
// nothing without a round trip.
func (c *Client) ArchiveBatch(ctx context.Context, name string, ids []int64) ([]int64, error) {
	return c.idsOf(ctx, "archive", name,
		`SELECT a.msg_id FROM pgmq.archive($1::text, $2::bigint[]) AS a(msg_id) ORDER BY a.msg_id`, ids)
}

// idsOf runs a batch operation on message ids (query takes the queue name and the ids) and returns the ids it
// affected; an empty ids costs no round trip.
func (c *Client) idsOf(ctx context.Context, op, name, query string, ids []int64) ([]int64, error) {
	if err := ValidateQueueName(name); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return c.ids(ctx, op, name, query, name, ids)
}

// SetVT makes a message visible vt from now (rounded up to whole seconds; 0 makes it visible at once) and
// returns it, or nil if there is no such message. read_ct is unchanged.
func (c *Client) SetVT(ctx context.Context, name string, id int64, vt time.Duration) (*Message, error) {
	if err := ValidateQueueName(name); err != nil {
		return nil, err
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, err
	}
	q, err := c.queries(ctx)
	if err != nil {
		return nil, err
	}
	msgs, err := c.messages(ctx, "set_vt", name, q.setVT, name, id, vts)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return &msgs[0], nil
}

// ---- metrics ----

const metricsColumns = `r.queue_name::text, r.queue_length, r.queue_visible_length, r.newest_msg_age_sec,
		r.oldest_msg_age_sec, r.total_messages, r.scrape_time`

// Metrics returns a queue's metrics (pgmq.metrics).
func (c *Client) Metrics(ctx context.Context, name string) (Metrics, error) {
	if err := ValidateQueueName(name); err != nil {
		return Metrics{}, err
	}
	rows, err := c.db.Query(ctx, `SELECT `+metricsColumns+` FROM pgmq.metrics($1::text) AS r`, name)
	if err != nil {
		return Metrics{}, wrapErr("metrics", name, err)
	}
	m, err := pgx.CollectExactlyOneRow(rows, scanMetrics)
	if err != nil {
		return Metrics{}, wrapErr("metrics", name, err)
	}
	return m, nil
}

// MetricsAll returns the metrics of every queue (pgmq.metrics_all), ordered by queue name.
func (c *Client) MetricsAll(ctx context.Context) ([]Metrics, error) {
	rows, err := c.db.Query(ctx, `SELECT `+metricsColumns+` FROM pgmq.metrics_all() AS r ORDER BY r.queue_name`)
	if err != nil {
		return nil, wrapErr("metrics_all", "", err)
	}
	ms, err := pgx.CollectRows(rows, scanMetrics)
	if err != nil {
		return nil, wrapErr("metrics_all", "", err)
	}
	return ms, nil
}

func scanMetrics(row pgx.CollectableRow) (Metrics, error) {
	var (
		m              Metrics
		newest, oldest *int32
	)
	err := row.Scan(&m.QueueName, &m.QueueLength, &m.QueueVisibleLength, &newest, &oldest, &m.TotalMessages,
		&m.ScrapeTime)
	if newest != nil {
		v := int(*newest)
		m.NewestMsgAgeSec = &v
	}
	if oldest != nil {
		v := int(*oldest)
		m.OldestMsgAgeSec = &v
	}
	return m, err
}

// ---- message queries and the server's layout ----

// messageQueries are the statements returning pgmq.message_record rows, built for the server's layout of that
// type: last_read_at exists from pgmq 1.10 (named read_at in 1.8.1 to 1.9), headers from 1.5. Columns are always
// selected by name, since their order differs between versions.
type messageQueries struct {
	read, readWithPoll, pop1, popN, setVT string
}

const layoutSQL = `
	SELECT count(*),
	       coalesce(bool_or(a.attname = 'last_read_at'), false),
	       coalesce(bool_or(a.attname = 'read_at'), false),
	       coalesce(bool_or(a.attname = 'headers'), false)
	FROM pg_catalog.pg_type AS t
	JOIN pg_catalog.pg_attribute AS a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
	WHERE t.oid = to_regtype('pgmq.message_record'::text)`

// queries returns the message statements, looking the layout up once per Client family (one catalog query).
func (c *Client) queries(ctx context.Context) (*messageQueries, error) {
	if q := c.shape.Load(); q != nil {
		return q, nil
	}
	var (
		attrs                      int64
		lastReadAt, readAt, header bool
	)
	if err := c.db.QueryRow(ctx, layoutSQL).Scan(&attrs, &lastReadAt, &readAt, &header); err != nil {
		return nil, fmt.Errorf("pgmq: inspect pgmq.message_record: %w", err)
	}
	lastReadCol, headersCol := "m.last_read_at", "m.headers"
	switch {
	case lastReadAt:
	case readAt:
		lastReadCol = "m.read_at"
	default:
		lastReadCol = "NULL::timestamptz"
	}
	if !header {
		headersCol = "NULL::jsonb"
	}
	cols := "m.msg_id, m.read_ct, m.enqueued_at, " + lastReadCol + ", m.vt, m.message, " + headersCol
	q := &messageQueries{
		read: `SELECT ` + cols + ` FROM pgmq.read($1::text, $2::integer, $3::integer) AS m ORDER BY m.msg_id`,
		readWithPoll: `SELECT ` + cols + ` FROM pgmq.read_with_poll($1::text, $2::integer, $3::integer, ` +
			`$4::integer, $5::integer) AS m ORDER BY m.msg_id`,
		pop1:  `SELECT ` + cols + ` FROM pgmq.pop($1::text) AS m ORDER BY m.msg_id`,
		popN:  `SELECT ` + cols + ` FROM pgmq.pop($1::text, $2::integer) AS m ORDER BY m.msg_id`,
		setVT: `SELECT ` + cols + ` FROM pgmq.set_vt($1::text, $2::bigint, $3::integer) AS m`,
	}
	if attrs == 0 {
		// pgmq is not installed (yet): do not remember anything; the statement itself will report the problem.
		return q, nil
	}
	c.shape.Store(q)
	return q, nil
}

func (c *Client) messages(ctx context.Context, op, name, sql string, args ...any) ([]Message, error) {
	rows, err := c.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrapErr(op, name, err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return nil, wrapErr(op, name, err)
	}
	return msgs, nil
}

func scanMessage(row pgx.CollectableRow) (Message, error) {
	var (
		m       Message
		readCt  int32
		lastRd  *time.Time
		payload []byte
		headers []byte
	)
	if err := row.Scan(&m.ID, &readCt, &m.EnqueuedAt, &lastRd, &m.VT, &payload, &headers); err != nil {
		return Message{}, err
	}
	m.ReadCount = int(readCt)
	m.LastReadAt = lastRd
	m.Message = payload
	m.Headers = headers
	return m, nil
}

// ---- helpers ----

func (c *Client) boolCall(ctx context.Context, op, name, sql string, id int64) (bool, error) {
	if err := ValidateQueueName(name); err != nil {
		return false, err
	}
	var ok bool
	if err := c.db.QueryRow(ctx, sql, name, id).Scan(&ok); err != nil {
		return false, wrapErr(op, name, err)
	}
	return ok, nil
}

func (c *Client) ids(ctx context.Context, op, name, sql string, args ...any) ([]int64, error) {
	rows, err := c.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrapErr(op, name, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, wrapErr(op, name, err)
	}
	return ids, nil
}

// seconds converts d to pgmq's whole seconds, rounding up; d <= 0 is 0.
func seconds(what string, d time.Duration) (int32, error) {
	if d <= 0 {
		return 0, nil
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	if s > math.MaxInt32 {
		return 0, fmt.Errorf("pgmq: %s %v is too long", what, d)
	}
	return int32(s), nil
}

func quantity(qty int) (int32, error) {
	if qty < 1 || qty > math.MaxInt32 {
		return 0, fmt.Errorf("pgmq: qty must be between 1 and %d, got %d", math.MaxInt32, qty)
	}
	return int32(qty), nil
}

// wrapErr adds the operation and queue to err, and marks a missing queue table with ErrQueueNotFound.
func wrapErr(op, name string, err error) error {
	if name == "" {
		return fmt.Errorf("pgmq: %s: %w", op, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" &&
		(strings.Contains(pgErr.Message, "q_"+name) || strings.Contains(pgErr.Message, "a_"+name)) {
		return fmt.Errorf("pgmq: %s: queue %q: %w: %w", op, name, ErrQueueNotFound, err)
	}
	return fmt.Errorf("pgmq: %s: queue %q: %w", op, name, err)
}
