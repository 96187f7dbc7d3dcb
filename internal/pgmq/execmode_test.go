package pgmq_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

// Because every argument is cast, the client behaves the same in every pgx query mode, including the simple
// protocol (PgBouncer in transaction mode) and modes that never ask the server for parameter types.
func TestClientInEveryQueryExecMode(t *testing.T) {
	b := setup(t)
	for i, mode := range []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg := b.pool.Config().Copy()
			cfg.ConnConfig.DefaultQueryExecMode = mode
			pool, err := pgxpool.NewWithConfig(b.ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			c := pgmq.New(pool)
			q := "mode_" + string(rune('a'+i))

			if err := c.CreateQueue(b.ctx, q); err != nil {
				t.Fatal(err)
			}
			id, err := c.Send(b.ctx, q, json.RawMessage(`{"s":"it's \"quoted\""}`), 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.SendAt(b.ctx, q, json.RawMessage(`{}`), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			batch, err := c.SendBatchWithHeaders(b.ctx, q,
				[]json.RawMessage{json.RawMessage(`[1]`), json.RawMessage(`"two"`)},
				[]json.RawMessage{json.RawMessage(`{"h":1}`), nil}, 0)
			if err != nil || len(batch) != 2 {
				t.Fatalf("SendBatchWithHeaders = %v, %v", batch, err)
			}
			msgs, err := c.Read(b.ctx, q, time.Minute, 10)
			if err != nil || !slices.Equal(msgIDs(msgs), append([]int64{id}, batch...)) {
				t.Fatalf("Read = %v, %v", msgIDs(msgs), err)
			}
			if !jsonEqual(t, msgs[0].Message, `{"s":"it's \"quoted\""}`) || !jsonEqual(t, msgs[1].Headers, `{"h":1}`) ||
				msgs[2].Headers != nil || !jsonEqual(t, msgs[2].Message, `"two"`) {
				t.Fatalf("payloads: %s / %s / %s", msgs[0].Message, msgs[1].Headers, msgs[2].Message)
			}
			if m, err := c.SetVT(b.ctx, q, id, 0); err != nil || m == nil {
				t.Fatalf("SetVT = %v, %v", m, err)
			}
			if popped, err := c.Pop(b.ctx, q, 5); err != nil || len(popped) != 1 || popped[0].ID != id {
				t.Fatalf("Pop = %v, %v", msgIDs(popped), err)
			}
			if got, err := c.ArchiveBatch(b.ctx, q, batch[:1]); err != nil || !slices.Equal(got, batch[:1]) {
				t.Fatalf("ArchiveBatch = %v, %v", got, err)
			}
			if got, err := c.DeleteBatch(b.ctx, q, batch[1:]); err != nil || !slices.Equal(got, batch[1:]) {
				t.Fatalf("DeleteBatch = %v, %v", got, err)
			}
			if m, err := c.Metrics(b.ctx, q); err != nil || m.QueueLength != 1 || m.TotalMessages != 4 {
				t.Fatalf("Metrics = %+v, %v", m, err)
			}
			last, err := c.Send(b.ctx, q, json.RawMessage(`{}`), 0)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := c.ReadWithPoll(b.ctx, q, time.Minute, 1, time.Second, 10*time.Millisecond); err != nil ||
				len(got) != 1 || got[0].ID != last {
				t.Fatalf("ReadWithPoll = %v, %v", msgIDs(got), err)
			}
			if ok, err := c.DropQueue(b.ctx, q); err != nil || !ok {
				t.Fatalf("DropQueue = %v, %v", ok, err)
			}
		})
	}
}
