package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

// These tests call the SQL functions directly, the way any pgmq user would, and pin down the behaviour PGMQ.md
// specifies. Parameters are cast exactly as the Go client casts them; TestUntypedLiteralCalls covers callers that
// write plain literals.

func jsonEqual(t testing.TB, got []byte, want string) bool {
	t.Helper()
	if want == "" {
		return got == nil
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad JSON %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

const (
	errTooLong      = "queue name is too long, maximum length is 47 characters"
	errInvalidChars = `queue name contains invalid characters: $, ;, --, or \'`
)

func TestQueueNameRules(t *testing.T) {
	b := setup(t)

	t.Run("max length 47", func(t *testing.T) {
		if _, err := b.pool.Exec(b.ctx, `SELECT pgmq.create($1::text)`, strings.Repeat("a", 47)); err != nil {
			t.Fatalf("47 characters: %v", err)
		}
		_, err := b.pool.Exec(b.ctx, `SELECT pgmq.create($1::text)`, strings.Repeat("a", 48))
		pgErr(t, err, "P0001", errTooLong)
	})

	for _, name := range []string{"a$b", "a;b", "a--b", "a'b", "$", ";"} {
		t.Run("invalid "+name, func(t *testing.T) {
			_, err := b.pool.Exec(b.ctx, `SELECT pgmq.create($1::text)`, name)
			pgErr(t, err, "P0001", errInvalidChars)
			// Every function checks, not only create.
			_, err = b.pool.Exec(b.ctx, `SELECT pgmq.send($1::text, $2::jsonb)`, name, `{}`)
			pgErr(t, err, "P0001", errInvalidChars)
			_, err = b.pool.Exec(b.ctx, `SELECT * FROM pgmq.read($1::text, $2::integer, $3::integer)`, name, 1, 1)
			pgErr(t, err, "P0001", errInvalidChars)
		})
	}

	t.Run("table name is lower-cased, identifiers quoted", func(t *testing.T) {
		for _, name := range []string{"MixedCase", "with space", "a-b.c"} {
			if _, err := b.pool.Exec(b.ctx, `SELECT pgmq.create($1::text)`, name); err != nil {
				t.Fatalf("create %q: %v", name, err)
			}
			table := "q_" + strings.ToLower(name)
			if !b.queryBool(t, `SELECT to_regclass(format('pgmq.%I', $1::text)) IS NOT NULL`, table) {
				t.Fatalf("create %q: no table pgmq.%q", name, table)
			}
			if !b.queryBool(t, `SELECT to_regclass(format('pgmq.%I', $1::text)) IS NOT NULL`, "a_"+strings.ToLower(name)) {
				t.Fatalf("create %q: no archive table", name)
			}
			var id int64
			if err := b.pool.QueryRow(b.ctx, `SELECT pgmq.send($1::text, $2::jsonb)`, name, `{"x":1}`).Scan(&id); err != nil {
				t.Fatalf("send to %q: %v", name, err)
			}
			if n := b.queryInt(t, `SELECT count(*) FROM pgmq.meta WHERE queue_name = $1::text`, name); n != 1 {
				t.Fatalf("meta rows for %q = %d, want 1 (the name as given)", name, n)
			}
		}
	})
}

func TestCreateIsIdempotentAndConcurrent(t *testing.T) {
	b := setup(t)
	const n = 4
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i], _ = b.connect(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := 0; j < 5; j++ {
				if _, err := conns[i].Exec(b.ctx, `SELECT pgmq.create($1::text)`, "same"); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("creator %d: %v", i, err)
		}
	}
	if got := b.queryInt(t, `SELECT count(*) FROM pgmq.meta WHERE queue_name = 'same'`); got != 1 {
		t.Fatalf("meta rows = %d, want 1", got)
	}
	var created time.Time
	if err := b.pool.QueryRow(b.ctx, `SELECT created_at FROM pgmq.meta WHERE queue_name = 'same'`).Scan(&created); err != nil || created.IsZero() {
		t.Fatalf("created_at = %v, %v", created, err)
	}
}

func TestDropQueue(t *testing.T) {
	b := setupQueue(t)
	b.send(t, "q", 2)
	conn, notes := b.connect(t)

	var dropped bool
	if err := conn.QueryRow(b.ctx, `SELECT pgmq.drop_queue($1::text)`, "q").Scan(&dropped); err != nil || !dropped {
		t.Fatalf("drop_queue(existing) = %v, %v; want true", dropped, err)
	}
	if b.queryBool(t, `SELECT to_regclass('pgmq.q_q') IS NOT NULL OR to_regclass('pgmq.a_q') IS NOT NULL`) {
		t.Fatal("tables survive drop_queue")
	}
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.meta`); n != 0 {
		t.Fatalf("meta has %d rows after drop", n)
	}
	if len(notes.all()) != 0 {
		t.Fatalf("NOTICE on a successful drop: %q", notes.all())
	}

	if err := conn.QueryRow(b.ctx, `SELECT pgmq.drop_queue($1::text)`, "q").Scan(&dropped); err != nil || dropped {
		t.Fatalf("drop_queue(absent) = %v, %v; want false, no error", dropped, err)
	}
	if got := notes.all(); !slices.Equal(got, []string{"pgmq queue `q` does not exist"}) {
		t.Fatalf("NOTICEs = %q, want the absent-queue notice", got)
	}

	// Client.
	if ok, err := b.client.DropQueue(b.ctx, "q"); err != nil || ok {
		t.Fatalf("DropQueue(absent) = %v, %v", ok, err)
	}
	if err := b.client.CreateQueue(b.ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.client.DropQueue(b.ctx, "q"); err != nil || !ok {
		t.Fatalf("DropQueue(existing) = %v, %v", ok, err)
	}
}

func TestPurgeQueueKeepsIDs(t *testing.T) {
	b := setupQueue(t)
	b.send(t, "q", 3)
	var n int64
	if err := b.pool.QueryRow(b.ctx, `SELECT pgmq.purge_queue($1::text)`, "q").Scan(&n); err != nil || n != 3 {
		t.Fatalf("purge_queue = %d, %v; want 3", n, err)
	}
	if got := b.send(t, "q", 1); !slices.Equal(got, []int64{4}) {
		t.Fatalf("id after purge = %v, want [4] (purge does not reset ids)", got)
	}
	if n, err := b.client.PurgeQueue(b.ctx, "q"); err != nil || n != 1 {
		t.Fatalf("PurgeQueue = %d, %v; want 1", n, err)
	}
	if n, err := b.client.PurgeQueue(b.ctx, "q"); err != nil || n != 0 {
		t.Fatalf("PurgeQueue(empty) = %d, %v; want 0", n, err)
	}
}

func TestListQueues(t *testing.T) {
	b := setup(t)
	if qs, err := b.client.ListQueues(b.ctx); err != nil || len(qs) != 0 {
		t.Fatalf("ListQueues(none) = %v, %v", qs, err)
	}
	for _, name := range []string{"zeta", "alpha", "mid"} {
		if err := b.client.CreateQueue(b.ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	qs, err := b.client.ListQueues(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range qs {
		names = append(names, q.Name)
		if q.IsPartitioned || q.IsUnlogged || q.CreatedAt.IsZero() {
			t.Errorf("queue %+v: want not partitioned, logged, created_at set", q)
		}
	}
	if !slices.Equal(names, []string{"alpha", "mid", "zeta"}) {
		t.Fatalf("ListQueues names = %q", names)
	}
	// Raw, named columns.
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.list_queues() AS l WHERE l.queue_name IS NOT NULL AND l.created_at IS NOT NULL`); n != 3 {
		t.Fatalf("list_queues() rows = %d", n)
	}
}

func TestSendOverloads(t *testing.T) {
	b := setupQueue(t)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const msg, hdr = `{"k":"v","n":[1,2]}`, `{"h":"x"}`
	for _, tc := range []struct {
		name    string
		sql     string
		args    []any
		delay   time.Duration // vt - enqueued_at lower bound, when at is zero
		at      time.Time
		headers string
	}{
		{"msg", `SELECT pgmq.send($1::text, $2::jsonb)`, []any{"q", msg}, 0, time.Time{}, ""},
		{"msg delay-int", `SELECT pgmq.send($1::text, $2::jsonb, $3::integer)`, []any{"q", msg, 5}, 5 * time.Second, time.Time{}, ""},
		{"msg delay-tz", `SELECT pgmq.send($1::text, $2::jsonb, $3::timestamptz)`, []any{"q", msg, at}, 0, at, ""},
		{"msg headers", `SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb)`, []any{"q", msg, hdr}, 0, time.Time{}, hdr},
		{"msg headers delay-int", `SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb, $4::integer)`, []any{"q", msg, hdr, 7}, 7 * time.Second, time.Time{}, hdr},
		{"msg headers delay-tz", `SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb, $4::timestamptz)`, []any{"q", msg, hdr, at}, 0, at, hdr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var id int64
			if err := b.pool.QueryRow(b.ctx, tc.sql, tc.args...).Scan(&id); err != nil {
				t.Fatal(err)
			}
			r, ok := b.row(t, "q_q", id)
			if !ok {
				t.Fatalf("message %d not stored", id)
			}
			if !jsonEqual(t, r.Message, msg) || !jsonEqual(t, r.Headers, tc.headers) {
				t.Errorf("stored message %s headers %s; want %s, %q", r.Message, r.Headers, msg, tc.headers)
			}
			if r.ReadCt != 0 || r.LastReadAt != nil {
				t.Errorf("new message read_ct=%d last_read_at=%v", r.ReadCt, r.LastReadAt)
			}
			if !tc.at.IsZero() {
				if !r.VT.Equal(tc.at) {
					t.Errorf("vt = %v, want %v", r.VT, tc.at)
				}
			} else if d := r.VT.Sub(r.EnqueuedAt); d < tc.delay || d > tc.delay+5*time.Second {
				t.Errorf("vt - enqueued_at = %v, want %v (+ a little)", d, tc.delay)
			}
		})
	}
}

func TestSendBatchOverloads(t *testing.T) {
	b := setupQueue(t)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	msgs := []json.RawMessage{json.RawMessage(`{"n":1}`), json.RawMessage(`{"n":2}`), json.RawMessage(`{"n":3}`)}
	hdrs := []json.RawMessage{json.RawMessage(`{"h":1}`), nil, json.RawMessage(`{"h":3}`)}
	for _, tc := range []struct {
		name    string
		sql     string
		extra   []any
		delay   time.Duration
		at      time.Time
		headers bool
	}{
		{"msgs", `SELECT b.id FROM pgmq.send_batch($1::text, $2::jsonb[]) AS b(id)`, nil, 0, time.Time{}, false},
		{"msgs delay-int", `SELECT b.id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::integer) AS b(id)`, []any{4}, 4 * time.Second, time.Time{}, false},
		{"msgs delay-tz", `SELECT b.id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::timestamptz) AS b(id)`, []any{at}, 0, at, false},
		{"msgs headers", `SELECT b.id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[]) AS b(id)`, []any{hdrs}, 0, time.Time{}, true},
		{"msgs headers delay-int", `SELECT b.id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::integer) AS b(id)`, []any{hdrs, 6}, 6 * time.Second, time.Time{}, true},
		{"msgs headers delay-tz", `SELECT b.id FROM pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::timestamptz) AS b(id)`, []any{hdrs, at}, 0, at, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := b.ids(t, b.pool, tc.sql, append([]any{"q", msgs}, tc.extra...)...)
			if len(got) != len(msgs) {
				t.Fatalf("ids = %v, want %d", got, len(msgs))
			}
			for i, id := range got {
				if i > 0 && id != got[i-1]+1 {
					t.Fatalf("ids %v are not consecutive in array order", got)
				}
				r, ok := b.row(t, "q_q", id)
				if !ok {
					t.Fatalf("message %d not stored", id)
				}
				wantHdr := ""
				if tc.headers && hdrs[i] != nil {
					wantHdr = string(hdrs[i])
				}
				if !jsonEqual(t, r.Message, string(msgs[i])) || !jsonEqual(t, r.Headers, wantHdr) {
					t.Errorf("id %d (#%d): message %s headers %s; want %s %q", id, i, r.Message, r.Headers, msgs[i], wantHdr)
				}
				if !tc.at.IsZero() {
					if !r.VT.Equal(tc.at) {
						t.Errorf("vt = %v, want %v", r.VT, tc.at)
					}
				} else if d := r.VT.Sub(r.EnqueuedAt); d < tc.delay || d > tc.delay+5*time.Second {
					t.Errorf("vt - enqueued_at = %v, want %v (+ a little)", d, tc.delay)
				}
			}
		})
	}
}

func TestSendBatchErrors(t *testing.T) {
	b := setupQueue(t)
	two := []json.RawMessage{json.RawMessage(`{}`), json.RawMessage(`{}`)}
	for _, tc := range []struct {
		name string
		sql  string
		args []any
		msg  string
	}{
		{"NULL msgs", `SELECT pgmq.send_batch($1::text, $2::jsonb[])`, []any{"q", nil}, "msgs cannot be NULL or empty"},
		{"empty msgs", `SELECT pgmq.send_batch($1::text, $2::jsonb[])`, []any{"q", []json.RawMessage{}}, "msgs cannot be NULL or empty"},
		{"empty msgs delay", `SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::integer)`, []any{"q", []json.RawMessage{}, 1}, "msgs cannot be NULL or empty"},
		{"headers too short", `SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[])`,
			[]any{"q", two, []json.RawMessage{json.RawMessage(`{}`)}}, "headers array length (1) must match msgs array length (2)"},
		{"headers too long", `SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::integer)`,
			[]any{"q", two[:1], two, 0}, "headers array length (2) must match msgs array length (1)"},
		{"headers empty", `SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::timestamptz)`,
			[]any{"q", two, []json.RawMessage{}, time.Now()}, "headers array length (0) must match msgs array length (2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.pool.Exec(b.ctx, tc.sql, tc.args...)
			pgErr(t, err, "P0001", tc.msg)
		})
	}
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.q_q`); n != 0 {
		t.Fatalf("%d messages stored by failing calls", n)
	}

	// The client checks lengths itself (pgmq < 1.11 does not) and sends nothing for an empty batch.
	if _, err := b.client.SendBatchWithHeaders(b.ctx, "q", two, two[:1], 0); err == nil ||
		!strings.Contains(err.Error(), "headers array length (1) must match msgs array length (2)") {
		t.Fatalf("SendBatchWithHeaders(mismatch) error = %v", err)
	}
	if got, err := b.client.SendBatch(b.ctx, "q", nil, 0); err != nil || got != nil {
		t.Fatalf("SendBatch(empty) = %v, %v; want nil, nil", got, err)
	}
}

// A non-Go caller writes plain literals. The common forms must resolve to exactly one function (no
// "function pgmq.send(unknown, unknown) is not unique").
func TestUntypedLiteralCalls(t *testing.T) {
	b := setup(t)
	conn, _ := b.connect(t)
	for _, sql := range []string{
		`SELECT pgmq.create('u')`,
		`SELECT * FROM pgmq.send('u', '{"a":1}')`,
		`SELECT * FROM pgmq.send('u', '{"a":2}', 0)`,
		`SELECT * FROM pgmq.send('u', '{"a":3}', now())`,
		`SELECT * FROM pgmq.send('u', '{"a":4}', '{"h":1}'::jsonb)`,
		`SELECT * FROM pgmq.send('u', '{"a":5}', '{"h":1}', 0)`,
		`SELECT * FROM pgmq.send_batch('u', ARRAY['{"a":6}', '{"a":7}']::jsonb[])`,
		`SELECT * FROM pgmq.send_batch('u', '{"{\"a\":8}"}')`,
		`SELECT * FROM pgmq.send_batch('u', ARRAY['{"a":9}'::jsonb], 0)`,
		`SELECT * FROM pgmq.read('u', 30, 2)`,
		`SELECT * FROM pgmq.read('u', 30, 1, '{"a":5}')`,
		`SELECT * FROM pgmq.read_with_poll('u', 30, 1)`,
		`SELECT * FROM pgmq.read_with_poll('u', 30, 1, 1, 10)`,
		`SELECT * FROM pgmq.pop('u')`,
		`SELECT * FROM pgmq.pop('u', 1)`,
		`SELECT * FROM pgmq.set_vt('u', 1, 0)`,
		`SELECT * FROM pgmq.set_vt('u', 2, now())`,
		`SELECT pgmq.delete('u', 1)`,
		`SELECT * FROM pgmq.delete('u', ARRAY[2, 3])`,
		`SELECT pgmq.archive('u', 4)`,
		`SELECT * FROM pgmq.archive('u', ARRAY[5, 6])`,
		`SELECT * FROM pgmq.metrics('u')`,
		`SELECT * FROM pgmq.metrics_all()`,
		`SELECT * FROM pgmq.list_queues()`,
		`SELECT pgmq.purge_queue('u')`,
		`SELECT pgmq.drop_queue('u')`,
	} {
		// Exec without arguments uses the simple protocol: the statement text is all the server sees.
		if _, err := conn.Exec(b.ctx, sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

func TestReadVisibilityAndOrder(t *testing.T) {
	b := setupQueue(t)
	sent := b.send(t, "q", 10)

	read := func(vt, qty int) []pgmq.Message {
		t.Helper()
		msgs, err := b.client.Read(b.ctx, "q", time.Duration(vt)*time.Second, qty)
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}

	// FIFO by msg_id, qty honoured, rows returned in msg_id order.
	first := read(300, 3)
	if got := msgIDs(first); !slices.Equal(got, sent[:3]) {
		t.Fatalf("first read = %v, want %v", got, sent[:3])
	}
	for _, m := range first {
		if m.ReadCount != 1 || m.LastReadAt == nil {
			t.Fatalf("read message %+v: want read_ct 1 and last_read_at set", m)
		}
		if d := m.VT.Sub(*m.LastReadAt); d < 300*time.Second || d > 301*time.Second {
			t.Fatalf("vt - last_read_at = %v, want 300s", d)
		}
		if !jsonEqual(t, m.Message, `{"i":`+jsonNum(m.ID-sent[0]+1)+`}`) {
			t.Fatalf("message %d = %s", m.ID, m.Message)
		}
	}
	if got := msgIDs(read(300, 4)); !slices.Equal(got, sent[3:7]) {
		t.Fatalf("second read = %v, want %v (read messages are invisible)", got, sent[3:7])
	}
	if got := msgIDs(read(300, 100)); !slices.Equal(got, sent[7:]) {
		t.Fatalf("third read = %v, want %v", got, sent[7:])
	}
	if got := read(300, 100); len(got) != 0 {
		t.Fatalf("read of an all-invisible queue = %v", msgIDs(got))
	}

	// A short visibility timeout: invisible until vt passes, then read again with read_ct 2.
	b.exec(t, `SELECT pgmq.purge_queue('q')`)
	id := b.send(t, "q", 1)[0]
	m := read(1, 1)
	if len(m) != 1 || m[0].ID != id {
		t.Fatalf("read = %v", m)
	}
	vt := m[0].VT
	if again := read(1, 1); len(again) != 0 && again[0].LastReadAt.Before(vt) {
		t.Fatalf("message re-read at %v, before its vt %v", again[0].LastReadAt, vt)
	}
	var reread []pgmq.Message
	eventually(t, 10*time.Second, "the message to become visible again", func() bool {
		reread = read(30, 1)
		return len(reread) == 1
	})
	if reread[0].ID != id || reread[0].ReadCount < 2 || reread[0].LastReadAt.Before(vt) {
		t.Fatalf("re-read %+v: want id %d, read_ct >= 2, read after %v", reread[0], id, vt)
	}
}

func jsonNum(i int64) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestReadConditional(t *testing.T) {
	b := setupQueue(t)
	var kinds []json.RawMessage
	for _, k := range []string{"a", "b", "a", "b"} {
		kinds = append(kinds, json.RawMessage(`{"kind":"`+k+`"}`))
	}
	ids, err := b.client.SendBatch(b.ctx, "q", kinds, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := b.ids(t, b.pool, `SELECT r.msg_id FROM pgmq.read($1::text, $2::integer, $3::integer, $4::jsonb) AS r`,
		"q", 300, 10, `{"kind":"b"}`)
	if !slices.Equal(got, []int64{ids[1], ids[3]}) {
		t.Fatalf("conditional read = %v, want %v", got, []int64{ids[1], ids[3]})
	}
	// '{}' (the default) and NULL mean no filter.
	got = b.ids(t, b.pool, `SELECT r.msg_id FROM pgmq.read($1::text, $2::integer, $3::integer, $4::jsonb) AS r`,
		"q", 300, 1, `{}`)
	if !slices.Equal(got, ids[:1]) {
		t.Fatalf("read with '{}' = %v, want %v", got, ids[:1])
	}
	got = b.ids(t, b.pool, `SELECT r.msg_id FROM pgmq.read($1::text, $2::integer, $3::integer, $4::jsonb) AS r`,
		"q", 300, 1, nil)
	if !slices.Equal(got, ids[2:3]) {
		t.Fatalf("read with NULL = %v, want %v", got, ids[2:3])
	}
}

func TestReadWithPoll(t *testing.T) {
	b := setupQueue(t)

	// Empty queue: returns nothing once max_poll_seconds has passed.
	msgs, err := b.client.ReadWithPoll(b.ctx, "q", time.Minute, 1, time.Second, 50*time.Millisecond)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("ReadWithPoll(empty) = %v, %v", msgs, err)
	}

	// A message committed while the poll waits is found by it.
	type result struct {
		msgs []pgmq.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		m, err := b.client.ReadWithPoll(b.ctx, "q", time.Minute, 5, 20*time.Second, 20*time.Millisecond)
		done <- result{m, err}
	}()
	time.Sleep(200 * time.Millisecond)
	id, err := b.client.Send(b.ctx, "q", json.RawMessage(`{"late":true}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.msgs) != 1 || r.msgs[0].ID != id || r.msgs[0].ReadCount != 1 {
		t.Fatalf("ReadWithPoll = %+v, %v; want message %d", r.msgs, r.err, id)
	}

	// Raw, with the defaults.
	b.send(t, "q", 2)
	got := b.ids(t, b.pool, `SELECT r.msg_id FROM pgmq.read_with_poll($1::text, $2::integer, $3::integer) AS r`, "q", 60, 5)
	if len(got) != 2 {
		t.Fatalf("read_with_poll = %v, want 2 messages", got)
	}

	// ctx cancels the server-side wait.
	ctx, cancel := context.WithTimeout(b.ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := b.client.ReadWithPoll(ctx, "q", time.Minute, 1, 30*time.Second, 0); err == nil {
		t.Fatal("ReadWithPoll ignored its context")
	}
}

func TestPop(t *testing.T) {
	b := setupQueue(t)
	sent := b.send(t, "q", 3)
	delayed, err := b.client.Send(b.ctx, "q", json.RawMessage(`{"later":true}`), 300*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A message that has been read (and is visible again) keeps its read_ct when popped.
	if _, err := b.client.Read(b.ctx, "q", 0, 1); err != nil {
		t.Fatal(err)
	}

	msgs, err := b.client.Pop(b.ctx, "q", 1)
	if err != nil || len(msgs) != 1 || msgs[0].ID != sent[0] {
		t.Fatalf("Pop(1) = %+v, %v; want message %d", msgs, err, sent[0])
	}
	if msgs[0].ReadCount != 1 {
		t.Fatalf("popped read_ct = %d, want 1 (pop does not increment)", msgs[0].ReadCount)
	}
	if _, ok := b.row(t, "q_q", sent[0]); ok {
		t.Fatal("popped message still in the queue")
	}

	msgs, err = b.client.Pop(b.ctx, "q", 10)
	if err != nil || !slices.Equal(msgIDs(msgs), sent[1:]) {
		t.Fatalf("Pop(10) = %v, %v; want %v (not the delayed %d)", msgIDs(msgs), err, sent[1:], delayed)
	}
	for _, m := range msgs {
		if m.ReadCount != 0 {
			t.Fatalf("popped unread message has read_ct %d", m.ReadCount)
		}
	}
	if msgs, err := b.client.Pop(b.ctx, "q", 1); err != nil || len(msgs) != 0 {
		t.Fatalf("Pop(only invisible left) = %v, %v", msgs, err)
	}
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.q_q`); n != 1 {
		t.Fatalf("%d messages left, want the delayed one", n)
	}

	// Raw, with the default qty.
	b.exec(t, `SELECT pgmq.set_vt('q', $1::bigint, 0)`, delayed)
	got := b.ids(t, b.pool, `SELECT p.msg_id FROM pgmq.pop($1::text) AS p`, "q")
	if !slices.Equal(got, []int64{delayed}) {
		t.Fatalf("pop = %v", got)
	}
}

func TestDelete(t *testing.T) {
	b := setupQueue(t)
	sent := b.send(t, "q", 5)
	for _, tc := range []struct {
		id   int64
		want bool
	}{{sent[0], true}, {sent[0], false}, {999, false}} {
		if ok := b.queryBool(t, `SELECT pgmq.delete($1::text, $2::bigint)`, "q", tc.id); ok != tc.want {
			t.Fatalf("delete(%d) = %v, want %v", tc.id, ok, tc.want)
		}
	}
	got := b.ids(t, b.pool, `SELECT d.id FROM pgmq.delete($1::text, $2::bigint[]) AS d(id)`, "q", []int64{sent[2], 999, sent[1]})
	slices.Sort(got)
	if !slices.Equal(got, sent[1:3]) {
		t.Fatalf("delete(batch) = %v, want %v", got, sent[1:3])
	}

	// Client.
	if ok, err := b.client.Delete(b.ctx, "q", sent[3]); err != nil || !ok {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if ok, err := b.client.Delete(b.ctx, "q", sent[3]); err != nil || ok {
		t.Fatalf("Delete(again) = %v, %v", ok, err)
	}
	if got, err := b.client.DeleteBatch(b.ctx, "q", []int64{sent[4], sent[3], 12345}); err != nil || !slices.Equal(got, sent[4:]) {
		t.Fatalf("DeleteBatch = %v, %v; want %v", got, err, sent[4:])
	}
	if got, err := b.client.DeleteBatch(b.ctx, "q", nil); err != nil || got != nil {
		t.Fatalf("DeleteBatch(empty) = %v, %v", got, err)
	}
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.q_q`); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}

func TestArchive(t *testing.T) {
	b := setupQueue(t)
	sent, err := b.client.SendBatchWithHeaders(b.ctx, "q",
		[]json.RawMessage{json.RawMessage(`{"n":1}`), json.RawMessage(`{"n":2}`), json.RawMessage(`{"n":3}`), json.RawMessage(`{"n":4}`)},
		[]json.RawMessage{json.RawMessage(`{"h":1}`), nil, nil, nil}, 0)
	if err != nil {
		t.Fatal(err)
	}
	read, err := b.client.Read(b.ctx, "q", 300*time.Second, 1)
	if err != nil || len(read) != 1 {
		t.Fatal(read, err)
	}
	before, _ := b.row(t, "q_q", sent[0])

	if ok := b.queryBool(t, `SELECT pgmq.archive($1::text, $2::bigint)`, "q", sent[0]); !ok {
		t.Fatal("archive(existing) = false")
	}
	if _, ok := b.row(t, "q_q", sent[0]); ok {
		t.Fatal("archived message still in the queue")
	}
	after, ok := b.row(t, "a_q", sent[0])
	if !ok {
		t.Fatal("archived message not in the archive")
	}
	if after.ReadCt != 1 || !after.EnqueuedAt.Equal(before.EnqueuedAt) || !after.VT.Equal(before.VT) ||
		after.LastReadAt == nil || !after.LastReadAt.Equal(*before.LastReadAt) ||
		!jsonEqual(t, after.Message, `{"n":1}`) || !jsonEqual(t, after.Headers, `{"h":1}`) {
		t.Fatalf("archived row %+v differs from queue row %+v", after, before)
	}
	var archivedAt time.Time
	if err := b.pool.QueryRow(b.ctx, `SELECT archived_at FROM pgmq.a_q WHERE msg_id = $1::bigint`, sent[0]).Scan(&archivedAt); err != nil {
		t.Fatal(err)
	}
	if archivedAt.Before(after.EnqueuedAt) {
		t.Fatalf("archived_at %v before enqueued_at %v", archivedAt, after.EnqueuedAt)
	}
	if ok := b.queryBool(t, `SELECT pgmq.archive($1::text, $2::bigint)`, "q", sent[0]); ok {
		t.Fatal("archive(already archived) = true")
	}

	got := b.ids(t, b.pool, `SELECT a.id FROM pgmq.archive($1::text, $2::bigint[]) AS a(id)`, "q", []int64{sent[1], 777})
	if !slices.Equal(got, sent[1:2]) {
		t.Fatalf("archive(batch) = %v", got)
	}

	// Client.
	if ok, err := b.client.Archive(b.ctx, "q", sent[2]); err != nil || !ok {
		t.Fatalf("Archive = %v, %v", ok, err)
	}
	if ok, err := b.client.Archive(b.ctx, "q", sent[2]); err != nil || ok {
		t.Fatalf("Archive(again) = %v, %v", ok, err)
	}
	if got, err := b.client.ArchiveBatch(b.ctx, "q", []int64{sent[3], sent[2]}); err != nil || !slices.Equal(got, sent[3:]) {
		t.Fatalf("ArchiveBatch = %v, %v", got, err)
	}
	if q, a := b.queryInt(t, `SELECT count(*) FROM pgmq.q_q`), b.queryInt(t, `SELECT count(*) FROM pgmq.a_q`); q != 0 || a != 4 {
		t.Fatalf("queue %d / archive %d rows, want 0 / 4", q, a)
	}
}

func TestSetVT(t *testing.T) {
	b := setupQueue(t)
	id := b.send(t, "q", 1)[0]
	if _, err := b.client.Read(b.ctx, "q", 300*time.Second, 1); err != nil {
		t.Fatal(err)
	}

	// Back to visible now: read_ct unchanged, readable again.
	m, err := b.client.SetVT(b.ctx, "q", id, 0)
	if err != nil || m == nil {
		t.Fatalf("SetVT = %v, %v", m, err)
	}
	if m.ID != id || m.ReadCount != 1 || m.VT.After(b.serverNow(t)) {
		t.Fatalf("SetVT(0) = %+v: want read_ct 1, vt now", m)
	}
	msgs, err := b.client.Read(b.ctx, "q", 300*time.Second, 1)
	if err != nil || len(msgs) != 1 || msgs[0].ReadCount != 2 {
		t.Fatalf("read after SetVT(0) = %+v, %v", msgs, err)
	}

	// Later: invisible.
	b.exec(t, `SELECT pgmq.set_vt($1::text, $2::bigint, $3::integer)`, "q", id, 0)
	m, err = b.client.SetVT(b.ctx, "q", id, 300*time.Second)
	if err != nil || m == nil || m.VT.Sub(b.serverNow(t)) < 290*time.Second {
		t.Fatalf("SetVT(300s) = %+v, %v", m, err)
	}
	if msgs, _ := b.client.Read(b.ctx, "q", time.Second, 1); len(msgs) != 0 {
		t.Fatal("message visible after SetVT(300s)")
	}

	// timestamptz overload.
	at := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	var (
		gotID int64
		gotVT time.Time
		rc    int
	)
	err = b.pool.QueryRow(b.ctx, `SELECT s.msg_id, s.vt, s.read_ct FROM pgmq.set_vt($1::text, $2::bigint, $3::timestamptz) AS s`,
		"q", id, at).Scan(&gotID, &gotVT, &rc)
	if err != nil || gotID != id || !gotVT.Equal(at) || rc != 2 {
		t.Fatalf("set_vt(timestamptz) = %d %v %d, %v", gotID, gotVT, rc, err)
	}

	// Unknown id: no row, nil.
	if m, err := b.client.SetVT(b.ctx, "q", 4242, 0); err != nil || m != nil {
		t.Fatalf("SetVT(unknown) = %v, %v; want nil, nil", m, err)
	}
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.set_vt('q', 4242::bigint, 0)`); n != 0 {
		t.Fatalf("set_vt(unknown) rows = %d", n)
	}
}

func TestMetrics(t *testing.T) {
	b := setupQueue(t)

	m, err := b.client.Metrics(b.ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if m.QueueName != "q" || m.QueueLength != 0 || m.QueueVisibleLength != 0 || m.TotalMessages != 0 ||
		m.NewestMsgAgeSec != nil || m.OldestMsgAgeSec != nil || m.ScrapeTime.IsZero() {
		t.Fatalf("empty queue metrics = %+v", m)
	}

	b.send(t, "q", 2)
	if _, err := b.client.Send(b.ctx, "q", json.RawMessage(`{}`), 300*time.Second); err != nil {
		t.Fatal(err)
	}
	// A rolled-back send still consumes an id.
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgmq.New(tx).Send(b.ctx, "q", json.RawMessage(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}

	m, err = b.client.Metrics(b.ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if m.QueueLength != 3 || m.QueueVisibleLength != 2 || m.TotalMessages != 4 ||
		m.NewestMsgAgeSec == nil || m.OldestMsgAgeSec == nil || *m.OldestMsgAgeSec < *m.NewestMsgAgeSec || *m.NewestMsgAgeSec < 0 {
		t.Fatalf("metrics = %+v (ages %v %v); want length 3, visible 2, total 4", m, deref(m.NewestMsgAgeSec), deref(m.OldestMsgAgeSec))
	}

	if _, err := b.client.PurgeQueue(b.ctx, "q"); err != nil {
		t.Fatal(err)
	}
	m, err = b.client.Metrics(b.ctx, "q")
	if err != nil || m.QueueLength != 0 || m.TotalMessages != 4 || m.OldestMsgAgeSec != nil {
		t.Fatalf("metrics after purge = %+v, %v; want length 0, total 4, no ages", m, err)
	}

	// The result type has pgmq's 7 columns.
	rows, err := b.pool.Query(b.ctx, `SELECT * FROM pgmq.metrics($1::text)`, "q")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range rows.FieldDescriptions() {
		names = append(names, f.Name)
	}
	rows.Close()
	if want := []string{"queue_name", "queue_length", "newest_msg_age_sec", "oldest_msg_age_sec", "total_messages",
		"scrape_time", "queue_visible_length"}; !slices.Equal(names, want) {
		t.Fatalf("metrics columns = %q, want %q", names, want)
	}

	// metrics_all: every queue.
	if err := b.client.CreateQueue(b.ctx, "another"); err != nil {
		t.Fatal(err)
	}
	b.send(t, "another", 5)
	all, err := b.client.MetricsAll(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].QueueName != "another" || all[0].QueueLength != 5 || all[0].TotalMessages != 5 ||
		all[1].QueueName != "q" || all[1].TotalMessages != 4 {
		t.Fatalf("MetricsAll = %+v", all)
	}
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.metrics_all()`); n != 2 {
		t.Fatalf("metrics_all() rows = %d", n)
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// Every operation on a queue that does not exist fails with 42P01 naming its table, except drop_queue.
func TestMissingQueue(t *testing.T) {
	b := setup(t)
	const notExist = `relation "pgmq.q_x" does not exist`
	at := time.Now()
	one := []json.RawMessage{json.RawMessage(`{}`)}
	for _, tc := range []struct {
		sql  string
		args []any
	}{
		{`SELECT pgmq.purge_queue($1::text)`, nil},
		{`SELECT pgmq.send($1::text, $2::jsonb)`, []any{`{}`}},
		{`SELECT pgmq.send($1::text, $2::jsonb, $3::integer)`, []any{`{}`, 0}},
		{`SELECT pgmq.send($1::text, $2::jsonb, $3::timestamptz)`, []any{`{}`, at}},
		{`SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb)`, []any{`{}`, `{}`}},
		{`SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb, $4::integer)`, []any{`{}`, `{}`, 0}},
		{`SELECT pgmq.send($1::text, $2::jsonb, $3::jsonb, $4::timestamptz)`, []any{`{}`, `{}`, at}},
		{`SELECT pgmq.send_batch($1::text, $2::jsonb[])`, []any{one}},
		{`SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::integer)`, []any{one, 0}},
		{`SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::timestamptz)`, []any{one, at}},
		{`SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[])`, []any{one, one}},
		{`SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::integer)`, []any{one, one, 0}},
		{`SELECT pgmq.send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::timestamptz)`, []any{one, one, at}},
		{`SELECT * FROM pgmq.read($1::text, $2::integer, $3::integer)`, []any{30, 1}},
		{`SELECT * FROM pgmq.read_with_poll($1::text, $2::integer, $3::integer, $4::integer, $5::integer)`, []any{30, 1, 1, 10}},
		{`SELECT * FROM pgmq.pop($1::text)`, nil},
		{`SELECT * FROM pgmq.pop($1::text, $2::integer)`, []any{2}},
		{`SELECT pgmq.delete($1::text, $2::bigint)`, []any{1}},
		{`SELECT pgmq.delete($1::text, $2::bigint[])`, []any{[]int64{1}}},
		{`SELECT pgmq.archive($1::text, $2::bigint)`, []any{1}},
		{`SELECT pgmq.archive($1::text, $2::bigint[])`, []any{[]int64{1}}},
		{`SELECT * FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)`, []any{1, 0}},
		{`SELECT * FROM pgmq.set_vt($1::text, $2::bigint, $3::timestamptz)`, []any{1, at}},
		{`SELECT * FROM pgmq.metrics($1::text)`, nil},
	} {
		_, err := b.pool.Exec(b.ctx, tc.sql, append([]any{"x"}, tc.args...)...)
		if err == nil {
			t.Errorf("%s: no error", tc.sql)
			continue
		}
		pgErr(t, err, "42P01", notExist)
	}
	if b.queryBool(t, `SELECT pgmq.drop_queue($1::text)`, "x") {
		t.Fatal("drop_queue(missing) = true")
	}

	// The client maps 42P01 to ErrQueueNotFound, keeping the server error.
	c := b.client
	for name, call := range map[string]func() error{
		"PurgeQueue":   func() error { _, err := c.PurgeQueue(b.ctx, "x"); return err },
		"Send":         func() error { _, err := c.Send(b.ctx, "x", one[0], 0); return err },
		"SendAt":       func() error { _, err := c.SendAt(b.ctx, "x", one[0], at); return err },
		"SendHeaders":  func() error { _, err := c.SendWithHeaders(b.ctx, "x", one[0], one[0], 0); return err },
		"SendBatch":    func() error { _, err := c.SendBatch(b.ctx, "x", one, 0); return err },
		"SendBatchH":   func() error { _, err := c.SendBatchWithHeaders(b.ctx, "x", one, one, 0); return err },
		"Read":         func() error { _, err := c.Read(b.ctx, "x", time.Second, 1); return err },
		"ReadWithPoll": func() error { _, err := c.ReadWithPoll(b.ctx, "x", time.Second, 1, time.Second, 0); return err },
		"Pop":          func() error { _, err := c.Pop(b.ctx, "x", 1); return err },
		"PopN":         func() error { _, err := c.Pop(b.ctx, "x", 3); return err },
		"Delete":       func() error { _, err := c.Delete(b.ctx, "x", 1); return err },
		"DeleteBatch":  func() error { _, err := c.DeleteBatch(b.ctx, "x", []int64{1}); return err },
		"Archive":      func() error { _, err := c.Archive(b.ctx, "x", 1); return err },
		"ArchiveBatch": func() error { _, err := c.ArchiveBatch(b.ctx, "x", []int64{1}); return err },
		"SetVT":        func() error { _, err := c.SetVT(b.ctx, "x", 1, 0); return err },
		"Metrics":      func() error { _, err := c.Metrics(b.ctx, "x"); return err },
	} {
		err := call()
		if !errors.Is(err, pgmq.ErrQueueNotFound) {
			t.Errorf("%s: error %v is not ErrQueueNotFound", name, err)
			continue
		}
		pgErr(t, err, "42P01", notExist)
	}
}
