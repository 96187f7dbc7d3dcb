package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testBundle is what most tests need: a fresh database with pgmq installed, a pool and a client on it.
type testBundle struct {
	ctx    context.Context
	pool   *pgxpool.Pool
	client *pgmq.Client
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	pool := pgtest.NewPool(t)
	mode, err := pgmq.Install(ctx, pool)
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	// The suite pins down pgmq's behaviour, whichever implementation Install found: run it against a server with
	// the real extension available to compare the two (TASKER_TEST_PGMQ_MODE=extension makes sure it is used).
	if want := os.Getenv("TASKER_TEST_PGMQ_MODE"); want != "" && string(mode) != want {
		t.Fatalf("Install mode = %q, want %q (TASKER_TEST_PGMQ_MODE)", mode, want)
	}
	return &testBundle{ctx: ctx, pool: pool, client: pgmq.New(pool)}
}

// setupQueue is setup plus one queue, named "q".
func setupQueue(t testing.TB) *testBundle {
	t.Helper()
	b := setup(t)
	if err := b.client.CreateQueue(b.ctx, "q"); err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	return b
}

// notices collects the NOTICEs a connection receives.
type notices struct {
	mu   sync.Mutex
	msgs []string
}

func (n *notices) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// connect opens a connection of its own to the bundle's database (closed at the end of the test).
func (b *testBundle) connect(t testing.TB) (*pgx.Conn, *notices) {
	t.Helper()
	cfg := b.pool.Config().ConnConfig.Copy()
	n := &notices{}
	cfg.OnNotice = func(_ *pgconn.PgConn, notice *pgconn.Notice) {
		n.mu.Lock()
		n.msgs = append(n.msgs, notice.Message)
		n.mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(b.ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, n
}

func (b *testBundle) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := b.pool.Exec(b.ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (b *testBundle) queryInt(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var v int64
	if err := b.pool.QueryRow(b.ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func (b *testBundle) queryBool(t testing.TB, sql string, args ...any) bool {
	t.Helper()
	var v bool
	if err := b.pool.QueryRow(b.ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// ids runs a statement returning one bigint column.
func (b *testBundle) ids(t testing.TB, db pgmq.DBTX, sql string, args ...any) []int64 {
	t.Helper()
	rows, err := db.Query(b.ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return ids
}

// send enqueues n messages {"i": 1..n} (visible now) and returns their ids.
func (b *testBundle) send(t testing.TB, queue string, n int) []int64 {
	t.Helper()
	msgs := make([]json.RawMessage, n)
	for i := range msgs {
		msgs[i] = json.RawMessage(`{"i":` + strconv.Itoa(i+1) + `}`)
	}
	ids, err := b.client.SendBatch(b.ctx, queue, msgs, 0)
	if err != nil {
		t.Fatalf("SendBatch: %v", err)
	}
	return ids
}

// row is a queue or archive row as stored, read straight from its table (e.g. "q_q", "a_q"; test names need no
// quoting).
type row struct {
	ReadCt     int
	EnqueuedAt time.Time
	LastReadAt *time.Time
	VT         time.Time
	Message    []byte
	Headers    []byte
}

func (b *testBundle) row(t testing.TB, table string, id int64) (row, bool) {
	t.Helper()
	var r row
	err := b.pool.QueryRow(b.ctx, `SELECT read_ct, enqueued_at, last_read_at, vt, message, headers FROM pgmq.`+table+
		` WHERE msg_id = $1::bigint`, id).
		Scan(&r.ReadCt, &r.EnqueuedAt, &r.LastReadAt, &r.VT, &r.Message, &r.Headers)
	if errors.Is(err, pgx.ErrNoRows) {
		return row{}, false
	}
	if err != nil {
		t.Fatalf("row %s/%d: %v", table, id, err)
	}
	return r, true
}

// serverNow is the database clock.
func (b *testBundle) serverNow(t testing.TB) time.Time {
	t.Helper()
	var now time.Time
	if err := b.pool.QueryRow(b.ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgErr asserts err is a server error with the given SQLSTATE and (if non-empty) exact message.
func pgErr(t testing.TB, err error, code, message string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v, want a server error %s %q", err, code, message)
	}
	if pe.Code != code || (message != "" && pe.Message != message) {
		t.Fatalf("error = %s %q, want %s %q", pe.Code, pe.Message, code, message)
	}
}

func msgIDs(msgs []pgmq.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}
