package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

func TestValidateQueueName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"tasks_default", true},
		{"q0_9", true},
		{"_", true},
		{strings.Repeat("a", 40), true},
		{"", false},
		{strings.Repeat("a", 41), false},
		{"Tasks", false},
		{"a-b", false},
		{"a.b", false},
		{"a b", false},
		{"a$b", false},
		{"a;b", false},
		{"a'b", false},
		{"é", false},
	} {
		err := pgmq.ValidateQueueName(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("ValidateQueueName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if err != nil && (!errors.Is(err, pgmq.ErrInvalidQueueName) || !strings.Contains(err.Error(), "^[a-z0-9_]{1,40}$")) {
			t.Errorf("ValidateQueueName(%q) error %q: want ErrInvalidQueueName naming the rule", tc.name, err)
		}
	}
}

// Every method validates the name before any round trip: a Client without a database still answers.
func TestClientRejectsInvalidNamesWithoutRoundTrip(t *testing.T) {
	c := pgmq.New(nil) // any statement would panic
	ctx := context.Background()
	const bad = "Bad-Name"
	msg := json.RawMessage(`{}`)
	for name, call := range map[string]func() error{
		"CreateQueue":          func() error { return c.CreateQueue(ctx, bad) },
		"DropQueue":            func() error { _, err := c.DropQueue(ctx, bad); return err },
		"PurgeQueue":           func() error { _, err := c.PurgeQueue(ctx, bad); return err },
		"Send":                 func() error { _, err := c.Send(ctx, bad, msg, 0); return err },
		"SendAt":               func() error { _, err := c.SendAt(ctx, bad, msg, time.Now()); return err },
		"SendWithHeaders":      func() error { _, err := c.SendWithHeaders(ctx, bad, msg, msg, 0); return err },
		"SendBatch":            func() error { _, err := c.SendBatch(ctx, bad, []json.RawMessage{msg}, 0); return err },
		"SendBatchWithHeaders": func() error { _, err := c.SendBatchWithHeaders(ctx, bad, nil, nil, 0); return err },
		"Read":                 func() error { _, err := c.Read(ctx, bad, time.Second, 1); return err },
		"ReadWithPoll":         func() error { _, err := c.ReadWithPoll(ctx, bad, time.Second, 1, time.Second, 0); return err },
		"Pop":                  func() error { _, err := c.Pop(ctx, bad, 1); return err },
		"Delete":               func() error { _, err := c.Delete(ctx, bad, 1); return err },
		"DeleteBatch":          func() error { _, err := c.DeleteBatch(ctx, bad, []int64{1}); return err },
		"Archive":              func() error { _, err := c.Archive(ctx, bad, 1); return err },
		"ArchiveBatch":         func() error { _, err := c.ArchiveBatch(ctx, bad, []int64{1}); return err },
		"SetVT":                func() error { _, err := c.SetVT(ctx, bad, 1, 0); return err },
		"Metrics":              func() error { _, err := c.Metrics(ctx, bad); return err },
	} {
		if err := call(); !errors.Is(err, pgmq.ErrInvalidQueueName) {
			t.Errorf("%s(%q) = %v, want ErrInvalidQueueName", name, bad, err)
		}
	}
	// Bad quantities, too.
	for _, qty := range []int{0, -1} {
		if _, err := c.Read(ctx, "q", time.Second, qty); err == nil {
			t.Errorf("Read(qty=%d) accepted", qty)
		}
		if _, err := c.Pop(ctx, "q", qty); err == nil {
			t.Errorf("Pop(qty=%d) accepted", qty)
		}
	}
}

// pgmq counts whole seconds: durations round up, never down; zero and negative mean now.
func TestClientDurationsRoundUp(t *testing.T) {
	b := setupQueue(t)
	for _, tc := range []struct {
		delay time.Duration
		want  time.Duration
	}{
		{-5 * time.Second, 0},
		{0, 0},
		{time.Millisecond, time.Second},
		{time.Second, time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{2*time.Second + time.Nanosecond, 3 * time.Second},
	} {
		id, err := b.client.Send(b.ctx, "q", json.RawMessage(`{}`), tc.delay)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := b.row(t, "q_q", id)
		// enqueued_at is the transaction start, vt is clock_timestamp() + delay: vt - enqueued_at is the delay
		// plus the statement's own (tiny) duration.
		if d := r.VT.Sub(r.EnqueuedAt); d < tc.want || d > tc.want+900*time.Millisecond {
			t.Errorf("Send(delay %v): vt - enqueued_at = %v, want %v", tc.delay, d, tc.want)
		}
	}

	// Visibility timeouts round up too.
	b.exec(t, `SELECT pgmq.set_vt('q', msg_id, 0) FROM pgmq.q_q`)
	msgs, err := b.client.Read(b.ctx, "q", 1100*time.Millisecond, 1)
	if err != nil || len(msgs) != 1 {
		t.Fatal(msgs, err)
	}
	if d := msgs[0].VT.Sub(*msgs[0].LastReadAt); d < 2*time.Second || d > 2100*time.Millisecond {
		t.Errorf("Read(vt 1.1s): vt - last_read_at = %v, want 2s", d)
	}
}

func TestClientSendAtAndHeaders(t *testing.T) {
	b := setupQueue(t)
	past := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	future := time.Now().Add(time.Hour).Truncate(time.Microsecond)

	idPast, err := b.client.SendAt(b.ctx, "q", json.RawMessage(`{"when":"past"}`), past)
	if err != nil {
		t.Fatal(err)
	}
	idFuture, err := b.client.SendAt(b.ctx, "q", json.RawMessage(`{"when":"future"}`), future)
	if err != nil {
		t.Fatal(err)
	}
	idHdr, err := b.client.SendWithHeaders(b.ctx, "q", json.RawMessage(`{"h":true}`), json.RawMessage(`{"trace":"abc"}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := b.client.SendBatchWithHeaders(b.ctx, "q",
		[]json.RawMessage{json.RawMessage(`1`), json.RawMessage(`2`)},
		[]json.RawMessage{nil, json.RawMessage(`{"k":2}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}

	msgs, err := b.client.Read(b.ctx, "q", time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]int64{idPast, idHdr}, batch...)
	if got := msgIDs(msgs); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v (not the future message %d)", got, want, idFuture)
	}
	if msgs[0].Headers != nil || !jsonEqual(t, msgs[0].Message, `{"when":"past"}`) {
		t.Errorf("message without headers: %+v", msgs[0])
	}
	if !jsonEqual(t, msgs[1].Headers, `{"trace":"abc"}`) {
		t.Errorf("headers = %s", msgs[1].Headers)
	}
	if msgs[2].Headers != nil || !jsonEqual(t, msgs[3].Headers, `{"k":2}`) || !jsonEqual(t, msgs[3].Message, `2`) {
		t.Errorf("batch headers: %+v / %+v", msgs[2], msgs[3])
	}
	r, _ := b.row(t, "q_q", idFuture)
	if !r.VT.Equal(future) {
		t.Errorf("SendAt vt = %v, want %v", r.VT, future)
	}
}

// The client works on a pgx.Tx: what happens in a rolled-back transaction did not happen.
func TestTransactions(t *testing.T) {
	b := setupQueue(t)

	t.Run("rolled-back send is gone", func(t *testing.T) {
		tx, err := b.pool.Begin(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := b.client.WithDB(tx)
		if _, err := c.Send(b.ctx, "q", json.RawMessage(`{"tx":1}`), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SendBatch(b.ctx, "q", []json.RawMessage{json.RawMessage(`2`)}, 0); err != nil {
			t.Fatal(err)
		}
		if m, err := c.Metrics(b.ctx, "q"); err != nil || m.QueueLength != 2 {
			t.Fatalf("inside the tx: %+v, %v; want 2 messages", m, err)
		}
		if err := tx.Rollback(b.ctx); err != nil {
			t.Fatal(err)
		}
		if n := b.queryInt(t, `SELECT count(*) FROM pgmq.q_q`); n != 0 {
			t.Fatalf("%d messages after rollback", n)
		}
	})

	t.Run("uncommitted send is invisible to others", func(t *testing.T) {
		tx, err := b.pool.Begin(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(b.ctx) }()
		id, err := pgmq.New(tx).Send(b.ctx, "q", json.RawMessage(`{"tx":2}`), 0)
		if err != nil {
			t.Fatal(err)
		}
		if msgs, err := b.client.Read(b.ctx, "q", time.Minute, 10); err != nil || len(msgs) != 0 {
			t.Fatalf("other connection read %v, %v before commit", msgIDs(msgs), err)
		}
		if err := tx.Commit(b.ctx); err != nil {
			t.Fatal(err)
		}
		msgs, err := b.client.Read(b.ctx, "q", 0, 10)
		if err != nil || !slices.Equal(msgIDs(msgs), []int64{id}) {
			t.Fatalf("after commit read %v, %v; want [%d]", msgIDs(msgs), err, id)
		}
		b.exec(t, `SELECT pgmq.purge_queue('q')`)
	})

	t.Run("rolled-back read leaves vt and read_ct", func(t *testing.T) {
		id := b.send(t, "q", 1)[0]
		before, _ := b.row(t, "q_q", id)
		tx, err := b.pool.Begin(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := pgmq.New(tx).Read(b.ctx, "q", 300*time.Second, 1)
		if err != nil || len(msgs) != 1 || msgs[0].ReadCount != 1 {
			t.Fatalf("read in tx = %+v, %v", msgs, err)
		}
		if err := tx.Rollback(b.ctx); err != nil {
			t.Fatal(err)
		}
		after, _ := b.row(t, "q_q", id)
		if after.ReadCt != 0 || !after.VT.Equal(before.VT) || after.LastReadAt != nil {
			t.Fatalf("after rollback: %+v, want as before: %+v", after, before)
		}
		msgs, err = b.client.Read(b.ctx, "q", 300*time.Second, 1)
		if err != nil || len(msgs) != 1 || msgs[0].ID != id || msgs[0].ReadCount != 1 {
			t.Fatalf("read after rollback = %+v, %v", msgs, err)
		}
		b.exec(t, `SELECT pgmq.purge_queue('q')`)
	})

	t.Run("a reader skips rows another transaction holds", func(t *testing.T) {
		sent := b.send(t, "q", 3)
		tx, err := b.pool.Begin(b.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(b.ctx) }()
		held, err := pgmq.New(tx).Read(b.ctx, "q", 0, 1) // vt 0: only the row lock hides it
		if err != nil || len(held) != 1 || held[0].ID != sent[0] {
			t.Fatalf("tx read = %v, %v", msgIDs(held), err)
		}
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second) // a blocked reader would hit this
		defer cancel()
		msgs, err := b.client.Read(ctx, "q", 300*time.Second, 10)
		if err != nil || !slices.Equal(msgIDs(msgs), sent[1:]) {
			t.Fatalf("concurrent read = %v, %v; want %v", msgIDs(msgs), err, sent[1:])
		}
		if err := tx.Rollback(b.ctx); err != nil {
			t.Fatal(err)
		}
		msgs, err = b.client.Read(b.ctx, "q", 300*time.Second, 10)
		if err != nil || !slices.Equal(msgIDs(msgs), sent[:1]) {
			t.Fatalf("read after the holder rolled back = %v, %v; want %v", msgIDs(msgs), err, sent[:1])
		}
	})
}

// SKIP LOCKED under load: 4 readers drain 1,000 messages in batches; every message is read exactly once.
func TestConcurrentReadersReadEachMessageOnce(t *testing.T) {
	b := setupQueue(t)
	const total, readers, batch = 1000, 4, 10
	for i := 0; i < total; i += 100 {
		b.send(t, "q", 100)
	}

	var (
		mu    sync.Mutex
		seen  = map[int64]int{}
		wg    sync.WaitGroup
		errCh = make(chan error, readers)
		start = make(chan struct{})
	)
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				msgs, err := b.client.Read(b.ctx, "q", 5*time.Minute, batch)
				if err != nil {
					errCh <- err
					return
				}
				if len(msgs) == 0 {
					return
				}
				mu.Lock()
				for _, m := range msgs {
					seen[m.ID]++
				}
				mu.Unlock()
				if _, err := b.client.DeleteBatch(b.ctx, "q", msgIDs(msgs)); err != nil {
					errCh <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatal(err)
	}
	if len(seen) != total {
		t.Fatalf("read %d distinct messages, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("message %d read %d times", id, n)
		}
	}
	if m, err := b.client.Metrics(b.ctx, "q"); err != nil || m.QueueLength != 0 || m.TotalMessages != total {
		t.Fatalf("metrics after draining = %+v, %v", m, err)
	}
}

// WithDB shares the layout lookup; the clients stay independent otherwise.
func TestClientWithDB(t *testing.T) {
	b := setupQueue(t)
	b.send(t, "q", 2)
	if _, err := b.client.Read(b.ctx, "q", 0, 1); err != nil { // learns the layout
		t.Fatal(err)
	}
	conn, _ := b.connect(t)
	c := b.client.WithDB(conn)
	msgs, err := c.Read(b.ctx, "q", time.Minute, 5)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("WithDB(conn).Read = %v, %v", msgIDs(msgs), err)
	}
}
