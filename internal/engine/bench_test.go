package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// Benchmarks run on a durable cluster (see TestMain). Commands and figures: docs/benchmarks.md.

// roundTrips counts what pgx sends to the server: queries, prepares and batches, each one round trip.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func benchSetup(b *testing.B, maxConns int32, tracer pgx.QueryTracer) *testBundle {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	b.Cleanup(cancel)
	url := pgtest.NewDatabase(b)
	pool, err := store.Open(ctx, url, store.Options{MaxConns: maxConns, Tracer: tracer})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	return &testBundle{ctx: ctx, pool: pool, engine: engine.New(pool, engine.Options{QueryTimeout: time.Minute})}
}

func chainSteps(n int) []engine.StepSpec {
	steps := make([]engine.StepSpec, n)
	for i := range steps {
		steps[i] = engine.StepSpec{Name: fmt.Sprintf("s%d", i), Handler: "h"}
		if i > 0 {
			steps[i].DependsOn = []string{fmt.Sprintf("s%d", i-1)}
		}
	}
	return steps
}

// admitMany admits tasks chains of length steps, concurrently.
func admitMany(b *testing.B, tb *testBundle, queue string, tasks, steps int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < tasks; i += 8 {
				_, err := tb.engine.Admit(tb.ctx, engine.TaskSpec{ExternalKey: fmt.Sprintf("%s-%d", queue, i),
					Queue: queue, Steps: chainSteps(steps)})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// processAll runs workers claiming batch steps at a time and completing them with one CompleteMany, until
// total steps are done.
func processAll(b *testing.B, tb *testBundle, queue string, workers, batch, total int) int {
	b.Helper()
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := make([]engine.Completion, 0, batch)
			for done.Load() < int64(total) {
				steps, err := tb.engine.Claim(tb.ctx, queue, batch, time.Minute, fmt.Sprint("w", w))
				if err != nil {
					errs <- err
					return
				}
				if len(steps) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				cs = cs[:0]
				for _, s := range steps {
					cs = append(cs, engine.Completion{Lease: s.Lease, Result: json.RawMessage(`{"ok":true}`)})
				}
				res, err := tb.engine.CompleteMany(tb.ctx, cs)
				if err != nil {
					errs <- err
					return
				}
				for _, e := range res {
					if e != nil {
						errs <- e
						return
					}
				}
				done.Add(int64(len(steps)))
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return int(done.Load())
}

// BenchmarkHotPathRoundTrips counts the round trips a worker makes per step: claim + complete, one at a time,
// and batched (claim 100 + complete_many 100).
func BenchmarkHotPathRoundTrips(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			rt := &roundTrips{}
			tb := benchSetup(b, 4, rt)
			total := max(b.N, batch)
			total = (total + 4) / 5 * 5
			admitMany(b, tb, "rt", total/5, 5)
			b.ResetTimer()
			before := rt.n.Load()
			if batch == 1 {
				for done := 0; done < total; {
					steps, err := tb.engine.Claim(tb.ctx, "rt", 1, time.Minute, "w")
					if err != nil {
						b.Fatal(err)
					}
					for _, s := range steps {
						if err := tb.engine.Complete(tb.ctx, s.Lease, nil); err != nil {
							b.Fatal(err)
						}
						done++
					}
				}
			} else {
				processAll(b, tb, "rt", 1, batch, total)
			}
			b.StopTimer()
			b.ReportMetric(float64(rt.n.Load()-before)/float64(total), "roundtrips/step")
		})
	}
}

// BenchmarkThroughput compares the protocol with raw pgmq on the same database, with the same batch size (100)
// and concurrency (4 workers): raw is send_batch + read + delete of 100 messages per cycle; the protocol is
// claim(100) + complete_many(100) over 5-step chains (so most completions also enqueue a child). Tasks are
// admitted before the timer starts. The two alternate in 10 rounds, so that both see the same machine load (this
// machine is shared); each rate is its work over its own total time.
func BenchmarkThroughput(b *testing.B) {
	const workers, batch, rounds = 4, 100, 10
	tb := benchSetup(b, 16, nil)
	perRound := max(b.N/rounds, 1000)
	perRound = (perRound + 499) / 500 * 500
	total := perRound * rounds

	if _, err := tb.pool.Exec(tb.ctx, `SELECT pgmq.create('raw'::text)`); err != nil {
		b.Fatal(err)
	}
	msgs := make([]json.RawMessage, batch)
	for i := range msgs {
		msgs[i] = json.RawMessage(fmt.Sprintf(`{"task_id": %d, "step_id": %d, "attempt": 1}`, i, i))
	}
	raw := func(n int) int {
		var done atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for done.Load() < int64(n) {
					if _, err := tb.pool.Exec(tb.ctx, `SELECT pgmq.send_batch($1::text, $2::jsonb[], 0::integer)`, "raw", msgs); err != nil {
						b.Error(err)
						return
					}
					rows, err := tb.pool.Query(tb.ctx, `SELECT msg_id FROM pgmq.read($1::text, $2::integer, $3::integer)`, "raw", 60, batch)
					if err != nil {
						b.Error(err)
						return
					}
					ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := tb.pool.Exec(tb.ctx, `SELECT pgmq.delete($1::text, $2::bigint[])`, "raw", ids); err != nil {
						b.Error(err)
						return
					}
					done.Add(int64(len(ids)))
				}
			}()
		}
		wg.Wait()
		return int(done.Load())
	}

	b.StopTimer()
	// Rounds may overshoot by the batches in flight: admit enough for that.
	admitMany(b, tb, "proto", (total+rounds*workers*batch)/5, 5)
	b.StartTimer()
	var rawTime, protoTime time.Duration
	var rawDone, protoDone int
	for range rounds {
		start := time.Now()
		rawDone += raw(perRound)
		rawTime += time.Since(start)
		start = time.Now()
		protoDone += processAll(b, tb, "proto", workers, batch, perRound)
		protoTime += time.Since(start)
	}
	b.StopTimer()
	rawRate := float64(rawDone) / rawTime.Seconds()
	protoRate := float64(protoDone) / protoTime.Seconds()
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(protoRate, "steps/s")
	b.ReportMetric(protoRate/rawRate, "ratio")
}

// BenchmarkStageLatency measures a sequential 10-step chain: from the return of a step's complete to the return
// of the claim of its child, by a claimer woken by LISTEN/NOTIFY (no polling).
func BenchmarkStageLatency(b *testing.B) {
	tb := benchSetup(b, 4, nil)
	wake := make(chan struct{}, 1)
	listening := make(chan struct{})
	ctx, cancel := context.WithCancel(tb.ctx)
	defer cancel()
	go func() {
		_ = tb.engine.Listen(ctx, engine.Notifications{
			OnQueue: func(q string) {
				if q == "lat" {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			},
			OnConnect: func() { close(listening) },
		})
	}()
	<-listening

	chains := (b.N + 8) / 9
	var lat []time.Duration
	b.ResetTimer()
	for c := range chains {
		b.StopTimer()
		if _, err := tb.engine.Admit(tb.ctx, engine.TaskSpec{ExternalKey: fmt.Sprint("lat-", c), Queue: "lat",
			Steps: chainSteps(10)}); err != nil {
			b.Fatal(err)
		}
		<-wake
		steps, err := tb.engine.Claim(tb.ctx, "lat", 1, time.Minute, "w")
		if err != nil || len(steps) != 1 {
			b.Fatalf("claim root: %v %d", err, len(steps))
		}
		b.StartTimer()
		cur := steps[0]
		for range 9 {
			select { // forget wake-ups from earlier steps
			case <-wake:
			default:
			}
			if err := tb.engine.Complete(tb.ctx, cur.Lease, nil); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			var next []engine.ClaimedStep
			for len(next) == 0 {
				<-wake
				if next, err = tb.engine.Claim(tb.ctx, "lat", 1, time.Minute, "w"); err != nil {
					b.Fatal(err)
				}
			}
			lat = append(lat, time.Since(t0))
			cur = next[0]
		}
		if err := tb.engine.Complete(tb.ctx, cur.Lease, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}
