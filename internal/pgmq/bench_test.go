package pgmq_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// BenchmarkRawSendReadDelete is the "raw pgmq ceiling" the engine is compared with: one client, one queue,
// each iteration sends a batch, reads it back and deletes it (three round trips, three transactions). batch=1
// uses the single-message calls (send, read, delete), batch=100 the batch calls (send_batch, read qty 100,
// delete of an id array). Durability (fsync, synchronous_commit) is the cluster's: see TestMain.
func BenchmarkRawSendReadDelete(b *testing.B) {
	tb := setup(b)
	for _, batch := range []int{1, 100} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			queue := "bench_" + strconv.Itoa(batch)
			if err := tb.client.CreateQueue(tb.ctx, queue); err != nil {
				b.Fatal(err)
			}
			if _, err := tb.client.PurgeQueue(tb.ctx, queue); err != nil {
				b.Fatal(err)
			}
			msgs := make([]json.RawMessage, batch)
			for i := range msgs {
				msgs[i] = json.RawMessage(`{"task_id":123456,"step_id":` + strconv.Itoa(i) + `,"attempt":1}`)
			}
			ctx, c := tb.ctx, tb.client

			iterations := 0
			for b.Loop() {
				iterations++
				if batch == 1 {
					if _, err := c.Send(ctx, queue, msgs[0], 0); err != nil {
						b.Fatal(err)
					}
				} else if _, err := c.SendBatch(ctx, queue, msgs, 0); err != nil {
					b.Fatal(err)
				}
				read, err := c.Read(ctx, queue, 30*time.Second, batch)
				if err != nil {
					b.Fatal(err)
				}
				if len(read) != batch {
					b.Fatalf("read %d messages, want %d", len(read), batch)
				}
				if batch == 1 {
					if ok, err := c.Delete(ctx, queue, read[0].ID); err != nil || !ok {
						b.Fatalf("delete: %v, %v", ok, err)
					}
				} else {
					ids := msgIDs(read)
					if deleted, err := c.DeleteBatch(ctx, queue, ids); err != nil || len(deleted) != batch {
						b.Fatalf("delete batch: %d, %v", len(deleted), err)
					}
				}
			}
			b.ReportMetric(float64(iterations*batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
