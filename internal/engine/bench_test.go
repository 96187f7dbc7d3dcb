package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
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

// protoLoop runs workers goroutines, each claiming batch steps at a time and completing them with one
// CompleteMany, until stop reports true; done counts the steps completed.
func protoLoop(tb *testBundle, queue string, workers, batch int, done *atomic.Int64, stop func() bool) error {
	return runWorkers(workers, func(w int) error {
		cs := make([]engine.Completion, 0, batch)
		for !stop() {
			steps, err := tb.engine.Claim(tb.ctx, queue, batch, time.Minute, fmt.Sprint("w", w))
			if err != nil {
				return err
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
				return err
			}
			for _, e := range res {
				if e != nil {
					return e
				}
			}
			done.Add(int64(len(steps)))
		}
		return nil
	})
}

// rawLoop is raw pgmq's side of the comparison: workers goroutines loop send_batch(batch) → read(batch) →
// delete(ids) on queue until stop reports true; done counts the messages deleted.
func rawLoop(tb *testBundle, queue string, workers, batch int, done *atomic.Int64, stop func() bool) error {
	msgs := make([]json.RawMessage, batch)
	for i := range msgs {
		msgs[i] = json.RawMessage(fmt.Sprintf(`{"task_id": %d, "step_id": %d, "attempt": 1}`, i, i))
	}
	return runWorkers(workers, func(int) error {
		for !stop() {
			if _, err := tb.pool.Exec(tb.ctx, `SELECT pgmq.send_batch($1::text, $2::jsonb[], 0::integer)`, queue,
				msgs); err != nil {
				return err
			}
			rows, err := tb.pool.Query(tb.ctx, `SELECT msg_id FROM pgmq.read($1::text, $2::integer, $3::integer)`,
				queue, 60, batch)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			if _, err := tb.pool.Exec(tb.ctx, `SELECT pgmq.delete($1::text, $2::bigint[])`, queue, ids); err != nil {
				return err
			}
			done.Add(int64(len(ids)))
		}
		return nil
	})
}

// runWorkers runs fn for workers goroutines and returns the first error.
func runWorkers(workers int, fn func(w int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(w); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
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
				var done atomic.Int64
				if err := protoLoop(tb, "rt", 1, batch, &done,
					func() bool { return done.Load() >= int64(total) }); err != nil {
					b.Fatal(err)
				}
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
	b.StopTimer()
	// Rounds may overshoot by the batches in flight: admit enough for that.
	admitMany(b, tb, "proto", (total+rounds*workers*batch)/5, 5)
	b.StartTimer()
	var rawTime, protoTime time.Duration
	var rawDone, protoDone atomic.Int64
	for range rounds {
		start := time.Now()
		goal := rawDone.Load() + int64(perRound)
		if err := rawLoop(tb, "raw", workers, batch, &rawDone, func() bool { return rawDone.Load() >= goal }); err != nil {
			b.Fatal(err)
		}
		rawTime += time.Since(start)
		start = time.Now()
		goal = protoDone.Load() + int64(perRound)
		if err := protoLoop(tb, "proto", workers, batch, &protoDone,
			func() bool { return protoDone.Load() >= goal }); err != nil {
			b.Fatal(err)
		}
		protoTime += time.Since(start)
	}
	b.StopTimer()
	rawRate := float64(rawDone.Load()) / rawTime.Seconds()
	protoRate := float64(protoDone.Load()) / protoTime.Seconds()
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(protoRate, "steps/s")
	b.ReportMetric(protoRate/rawRate, "ratio")
}

// BenchmarkSustainedThroughput runs each side without pause for a window (TASKER_BENCH_WINDOW, default 30s):
// raw pgmq first, then the protocol, on one database with PostgreSQL's default autovacuum settings. It shows what
// each sustains once its queue table carries the dead tuples of its own churn, which the short rounds of
// BenchmarkThroughput (fresh tables, about half a second each) do not: raw pgmq's read slows down as dead index
// entries pile up between autovacuum passes. Rates of every 5 s are logged; the metrics cover the whole window.
// It does not use b.N: run it with -benchtime=1x.
func BenchmarkSustainedThroughput(b *testing.B) {
	const workers, batch = 4, 100
	window := 30 * time.Second
	if v := os.Getenv("TASKER_BENCH_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("TASKER_BENCH_WINDOW: %v", err)
		}
		window = d
	}
	tb := benchSetup(b, 16, nil)
	if _, err := tb.pool.Exec(tb.ctx, `SELECT pgmq.create('raw'::text)`); err != nil {
		b.Fatal(err)
	}
	// TASKER_BENCH_NAPTIME (e.g. 1s) runs autovacuum that often and without cost delay, as a queue-heavy
	// installation might be tuned; unset, PostgreSQL's defaults apply (naptime 1 min).
	if v := os.Getenv("TASKER_BENCH_NAPTIME"); v != "" {
		naptime, err := time.ParseDuration(v)
		if err != nil || naptime < time.Second {
			b.Fatalf("TASKER_BENCH_NAPTIME: want a duration of at least 1s, got %q", v)
		}
		for _, q := range []string{
			fmt.Sprintf("ALTER SYSTEM SET autovacuum_naptime = %d", int(naptime.Seconds())),
			"ALTER SYSTEM SET autovacuum_vacuum_cost_delay = 0", "SELECT pg_reload_conf()"} {
			if _, err := tb.pool.Exec(tb.ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		b.Cleanup(func() {
			for _, q := range []string{"ALTER SYSTEM RESET autovacuum_naptime",
				"ALTER SYSTEM RESET autovacuum_vacuum_cost_delay", "SELECT pg_reload_conf()"} {
				_, _ = tb.pool.Exec(context.Background(), q)
			}
		})
	}
	// Enough 5-step chains for the protocol to keep going for the whole window at 20,000 steps/s.
	const maxRate = 20000
	tasks := int(window.Seconds()*maxRate) / 5
	b.StopTimer()
	admitMany(b, tb, "proto", tasks, 5)

	measure := func(name string, loop func(done *atomic.Int64, stop func() bool) error) (float64, int64) {
		if _, err := tb.pool.Exec(tb.ctx, "CHECKPOINT"); err != nil {
			b.Fatal(err)
		}
		var done atomic.Int64
		var series []string
		stopSampling := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(5 * time.Second)
			defer tick.Stop()
			last := int64(0)
			for {
				select {
				case <-tick.C:
					n := done.Load()
					series = append(series, fmt.Sprint((n-last)/5))
					last = n
				case <-stopSampling:
					return
				}
			}
		}()
		start := time.Now()
		deadline := start.Add(window)
		b.StartTimer()
		err := loop(&done, func() bool { return time.Now().After(deadline) })
		b.StopTimer()
		elapsed := time.Since(start)
		close(stopSampling)
		<-sampled
		if err != nil {
			b.Fatal(err)
		}
		rate := float64(done.Load()) / elapsed.Seconds()
		b.Logf("%s: %.0f/s over %s; per 5 s: %s", name, rate, elapsed.Round(time.Millisecond),
			strings.Join(series, " "))
		return rate, done.Load()
	}
	rawRate, _ := measure("raw pgmq msgs", func(done *atomic.Int64, stop func() bool) error {
		return rawLoop(tb, "raw", workers, batch, done, stop)
	})
	protoRate, protoDone := measure("protocol steps", func(done *atomic.Int64, stop func() bool) error {
		return protoLoop(tb, "proto", workers, batch, done, stop)
	})
	if protoDone > int64(tasks*5-workers*batch) {
		b.Fatalf("the protocol ran out of steps (%d of %d): raise maxRate", protoDone, tasks*5)
	}
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(protoRate, "steps/s")
	b.ReportMetric(protoRate/rawRate, "ratio")
}

// BenchmarkWriteVolume counts what each side writes per unit of work, which is what its throughput follows on a
// machine whose PostgreSQL is busy (docs/benchmarks.md, "Why the ratio stays near 0.3"): rows inserted, updated
// and deleted (pg_stat_user_tables, after the connections closed so that every backend flushed its counters) and
// WAL bytes (pg_current_wal_lsn) per raw pgmq message (send_batch + read + delete) and per protocol step (claim +
// complete_many over 5-step chains), both in batches of 100 by one worker. It does not use b.N: run it with
// -benchtime=1x.
func BenchmarkWriteVolume(b *testing.B) {
	const units, batch = 20000, 100
	tb := benchSetup(b, 4, nil)
	if _, err := tb.pool.Exec(tb.ctx, `SELECT pgmq.create('raw'::text)`); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	admitMany(b, tb, "proto", units/5+batch, 5)
	type counts struct{ rows, wal int64 }
	read := func() counts {
		tb.pool.Reset() // backends flush their table counters when they exit
		var c counts
		err := tb.pool.QueryRow(tb.ctx, `SELECT (SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
		                                            FROM pg_stat_user_tables),
		                                          pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`).Scan(&c.rows, &c.wal)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	measure := func(name string, loop func(done *atomic.Int64, stop func() bool) error) (float64, float64) {
		before := read()
		var done atomic.Int64
		if err := loop(&done, func() bool { return done.Load() >= units }); err != nil {
			b.Fatal(err)
		}
		after := read()
		n := float64(done.Load())
		rows, wal := float64(after.rows-before.rows)/n, float64(after.wal-before.wal)/n
		b.Logf("%s: %.1f rows written and %.0f WAL bytes per unit (%d units)", name, rows, wal, done.Load())
		return rows, wal
	}
	rawRows, rawWAL := measure("raw pgmq message", func(done *atomic.Int64, stop func() bool) error {
		return rawLoop(tb, "raw", 1, batch, done, stop)
	})
	protoRows, protoWAL := measure("protocol step", func(done *atomic.Int64, stop func() bool) error {
		return protoLoop(tb, "proto", 1, batch, done, stop)
	})
	b.ReportMetric(rawRows, "raw-rows/msg")
	b.ReportMetric(protoRows, "rows/step")
	b.ReportMetric(rawWAL, "raw-WAL-B/msg")
	b.ReportMetric(protoWAL, "WAL-B/step")
	b.ReportMetric(rawWAL/protoWAL, "WAL-ratio")
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
