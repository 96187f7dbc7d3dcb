// Command bench measures tasker's workers end to end on a durable PostgreSQL cluster (fsync and synchronous_commit
// on) started for the run, and compares them with raw pgmq and with River on the same database in the same run.
// `make bench` runs it; it ends with one line per figure:
//
//	BENCH <name> <value> <unit>
//
// Figures:
//   - stage latency: chains of 20 no-op steps run by one worker; for each parent -> child pair, the time from the
//     parent handler's return to the child handler's start (the SDK's completion report, the engine's enqueue and
//     NOTIFY, the LISTEN wake-up and the claim), p50/p99/mean over -chains chains (after one warm-up chain);
//   - for each worker count W of -workers, back to back so that they see the same machine:
//   - tasker: -steps independent no-op steps (tasks of -task-steps steps without dependencies, admitted
//     beforehand) burnt down by W in-process Worker instances, each with its own pool and LISTEN connection and
//     -slots slots;
//   - raw pgmq: W concurrent clients looping send_batch + read + delete of -batch messages for -raw-duration;
//   - River: the same number of no-op jobs (inserted beforehand) burnt down by W River clients, each with its own
//     pool (sized like a worker's) and MaxWorkers = -slots, first with River's defaults (FetchCooldown 100 ms),
//     then with FetchCooldown 1 ms (-river-tuned).
//
// Every throughput run starts from emptied, vacuumed tables.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

type options struct {
	steps       int
	taskSteps   int
	workers     []int
	slots       int
	chains      int
	batch       int
	rawDuration time.Duration
	river       bool
	riverTuned  bool
	databaseURL string
	cpuProfile  string
	waits       bool
}

func main() {
	var o options
	var workers string
	flag.IntVar(&o.steps, "steps", 20000, "independent steps (and River jobs) per throughput run")
	flag.IntVar(&o.taskSteps, "task-steps", 10, "independent steps per task in the throughput runs")
	flag.StringVar(&workers, "workers", "1,2,4,8", "worker counts of the throughput runs")
	flag.IntVar(&o.slots, "slots", 100, "slots per worker (River: MaxWorkers per client)")
	flag.IntVar(&o.chains, "chains", 10, "20-step chains for the stage latency")
	flag.IntVar(&o.batch, "batch", 100, "messages per raw pgmq round (send_batch, read, delete)")
	flag.DurationVar(&o.rawDuration, "raw-duration", 3*time.Second, "duration of each raw pgmq run")
	flag.BoolVar(&o.river, "river", true, "run the River comparison")
	flag.BoolVar(&o.riverTuned, "river-tuned", true, "also run River with FetchCooldown 1ms (its default is 100ms)")
	flag.StringVar(&o.databaseURL, "database-url", "",
		"use this (empty, migratable) database instead of starting a durable cluster")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write CPU profiles of the tasker throughput runs to FILE.wN")
	flag.BoolVar(&o.waits, "waits", false, "sample the wait events of active backends during the tasker runs")
	flag.Parse()
	for _, s := range strings.Split(workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("bad -workers %q", workers)
		}
		o.workers = append(o.workers, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

type figure struct {
	name  string
	value float64
	unit  string
}

func run(ctx context.Context, o options) error {
	begin := time.Now()
	url := o.databaseURL
	if url == "" {
		logf("starting a durable PostgreSQL cluster (fsync=on, synchronous_commit=on)")
		cluster, err := pgtest.StartCluster(ctx, pgtest.Options{Durable: true})
		if err != nil {
			return err
		}
		defer cluster.Stop()
		admin, err := pgx.Connect(ctx, cluster.URL)
		if err != nil {
			return err
		}
		if _, err := admin.Exec(ctx, "CREATE DATABASE bench"); err != nil {
			return err
		}
		_ = admin.Close(ctx)
		url = strings.Replace(cluster.URL, "/postgres?", "/bench?", 1)
	}
	pool, err := store.Open(ctx, url, store.Options{MaxConns: 16})
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	var version, fsync, syncCommit string
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit')`).Scan(&version, &fsync, &syncCommit); err != nil {
		return err
	}
	logf("PostgreSQL %s, fsync=%s, synchronous_commit=%s; %d CPUs; load average %s", version, fsync, syncCommit,
		runtime.NumCPU(), loadAverage())

	var figs []figure
	add := func(name string, v float64, unit string) {
		figs = append(figs, figure{name, v, unit})
		logf("%s = %.3f %s", name, v, unit)
	}

	// 1. Stage latency.
	lat, err := stageLatency(ctx, url, o.chains)
	if err != nil {
		return fmt.Errorf("stage latency: %w", err)
	}
	add("stage_latency_p50", ms(percentile(lat, 50)), "ms")
	add("stage_latency_p99", ms(percentile(lat, 99)), "ms")
	add("stage_latency_mean", ms(mean(lat)), "ms")

	// 2. Throughput: for each worker count, tasker, raw pgmq and River back to back, so that the three see the
	// same conditions (the machine may be shared).
	if o.river {
		if err := migrateRiver(ctx, pool); err != nil {
			return fmt.Errorf("river migrate: %w", err)
		}
	}
	var bestSteps, bestRaw, bestRiver, bestRiverTuned float64
	var cpu *os.File
	for _, w := range o.workers {
		logf("--- %d workers; load average %s", w, loadAverage())
		if err := resetTasker(ctx, pool); err != nil {
			return err
		}
		if o.cpuProfile != "" {
			if cpu, err = os.Create(fmt.Sprintf("%s.w%d", o.cpuProfile, w)); err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(cpu); err != nil {
				return err
			}
		}
		var stopSampling func() map[string]int
		if o.waits {
			stopSampling = sampleWaits(ctx, pool)
		}
		steps, err := taskerThroughput(ctx, pool, url, o.steps, o.taskSteps, w, o.slots)
		if o.waits {
			logf("wait events of active backends (samples every 10 ms): %v", stopSampling())
		}
		if o.cpuProfile != "" {
			pprof.StopCPUProfile()
			_ = cpu.Close()
		}
		if err != nil {
			return fmt.Errorf("tasker throughput with %d workers: %w", w, err)
		}
		bestSteps = max(bestSteps, steps)
		add(fmt.Sprintf("tasker_steps_per_sec_w%d", w), steps, "steps/s")

		raw, err := rawPgmq(ctx, url, w, o.batch, o.rawDuration)
		if err != nil {
			return fmt.Errorf("raw pgmq with %d clients: %w", w, err)
		}
		bestRaw = max(bestRaw, raw)
		add(fmt.Sprintf("pgmq_raw_msgs_per_sec_c%d", w), raw, "msgs/s")
		add(fmt.Sprintf("ratio_tasker_vs_pgmq_raw_w%d", w), steps/raw, "x")

		if !o.river {
			continue
		}
		for _, tuned := range []bool{false, true} {
			if tuned && !o.riverTuned {
				continue
			}
			name := "river"
			if tuned {
				name = "river_tuned"
			}
			r, err := riverThroughput(ctx, pool, url, o.steps, w, o.slots, tuned)
			if err != nil {
				return fmt.Errorf("%s with %d clients: %w", name, w, err)
			}
			if tuned {
				bestRiverTuned = max(bestRiverTuned, r)
			} else {
				bestRiver = max(bestRiver, r)
			}
			add(fmt.Sprintf("%s_jobs_per_sec_w%d", name, w), r, "jobs/s")
			add(fmt.Sprintf("ratio_tasker_vs_%s_w%d", name, w), steps/r, "x")
		}
	}
	add("tasker_steps_per_sec_best", bestSteps, "steps/s")
	add("pgmq_raw_msgs_per_sec_best", bestRaw, "msgs/s")
	add("ratio_tasker_vs_pgmq_raw_best", bestSteps/bestRaw, "x")
	if o.river {
		add("river_jobs_per_sec_best", bestRiver, "jobs/s")
		add("ratio_tasker_vs_river_best", bestSteps/bestRiver, "x")
		if o.riverTuned {
			add("river_tuned_jobs_per_sec_best", bestRiverTuned, "jobs/s")
			add("ratio_tasker_vs_river_tuned_best", bestSteps/bestRiverTuned, "x")
		}
	}
	logf("done in %s; load average %s", time.Since(begin).Round(time.Second), loadAverage())
	for _, f := range figs {
		fmt.Printf("BENCH %s %s %s\n", f.name, strconv.FormatFloat(f.value, 'f', 3, 64), f.unit)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func mean(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t / time.Duration(len(ds))
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

var quiet = slog.New(slog.DiscardHandler)

// stageLatency runs chains of 20 no-op steps one after the other on one worker and returns, for every parent ->
// child pair, the time from the parent handler's return to the child handler's start.
func stageLatency(ctx context.Context, url string, chains int) ([]time.Duration, error) {
	const length = 20
	w, err := worker.Open(ctx, url, worker.Config{Queues: []string{"latency"}, ID: "latency", Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	type mark struct{ start, end time.Time }
	var (
		mu    sync.Mutex
		marks = map[int64]map[string]*mark{}
		done  = make(chan int64, chains)
	)
	w.Handle("stage", func(_ context.Context, s worker.Step) (worker.Result, error) {
		now := time.Now()
		mu.Lock()
		if marks[s.TaskID] == nil {
			marks[s.TaskID] = map[string]*mark{}
		}
		m := &mark{start: now}
		marks[s.TaskID][s.Name] = m
		m.end = time.Now()
		mu.Unlock()
		if s.Name == fmt.Sprintf("s%02d", length-1) {
			done <- s.TaskID
		}
		return nil, nil
	})
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- w.Run(runCtx) }()
	defer func() {
		cancel()
		<-ran
	}()

	admitPool, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	if err != nil {
		return nil, err
	}
	defer admitPool.Close()
	steps := make([]map[string]any, length)
	for i := range steps {
		steps[i] = map[string]any{"name": fmt.Sprintf("s%02d", i), "handler": "stage", "depends_on": []string{}}
		if i > 0 {
			steps[i]["depends_on"] = []string{fmt.Sprintf("s%02d", i-1)}
		}
	}
	time.Sleep(200 * time.Millisecond) // the worker is listening and idle
	var out []time.Duration
	for c := range chains + 1 { // the first chain warms up connections and plans
		doc, _ := json.Marshal(map[string]any{"external_key": fmt.Sprintf("latency-%d", c), "queue": "latency",
			"steps": steps})
		var id int64
		if err := admitPool.QueryRow(ctx, `SELECT a.task_id FROM tasker.admit($1::jsonb) AS a`, doc).Scan(&id); err != nil {
			return nil, err
		}
		select {
		case got := <-done:
			if got != id {
				return nil, fmt.Errorf("chain %d finished, expected %d", got, id)
			}
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("chain %d did not finish", c)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c == 0 {
			continue
		}
		mu.Lock()
		for i := 1; i < length; i++ {
			p, ch := marks[id][fmt.Sprintf("s%02d", i-1)], marks[id][fmt.Sprintf("s%02d", i)]
			out = append(out, ch.start.Sub(p.end))
		}
		mu.Unlock()
	}
	return out, nil
}

// resetTasker removes every task (and its history) so that each run starts from empty tables.
func resetTasker(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `DELETE FROM tasker.tasks; DELETE FROM tasker.step_transitions;
		DELETE FROM tasker.task_transitions; DELETE FROM tasker.workers`)
	if err != nil {
		return err
	}
	_, err = pool.Exec(ctx, `VACUUM ANALYZE`)
	return err
}

// admitNoops admits n no-op steps on queue "bench", as tasks of perTask independent steps (in large statements:
// admission is not measured).
func admitNoops(ctx context.Context, pool *pgxpool.Pool, n, perTask int, prefix string) error {
	start := time.Now()
	steps := make([]map[string]any, perTask)
	for i := range steps {
		steps[i] = map[string]any{"name": fmt.Sprintf("s%d", i), "handler": "noop", "depends_on": []string{}}
	}
	doc, err := json.Marshal(steps)
	if err != nil {
		return err
	}
	tasks := n / perTask
	chunk := max(1, 2000/perTask)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for from := 0; from < tasks; from += chunk {
		// Re-plan on fresh statistics before each chunk: PL/pgSQL plans cached while the tables were empty
		// turn admission quadratic (see docs/benchmarks.md).
		if _, err := conn.Exec(ctx, `ANALYZE tasker.tasks, tasker.steps, tasker.step_edges, tasker.step_transitions;
			DISCARD PLANS`); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, `
			SELECT count(*)
			FROM generate_series($2::integer, $3::integer) AS g
			CROSS JOIN LATERAL tasker.admit(jsonb_build_object(
				'external_key', $1::text || g, 'queue', 'bench', 'steps', $4::jsonb)) AS a`,
			prefix, from, min(from+chunk, tasks)-1, doc)
		if err != nil {
			return err
		}
	}
	logf("admitted %d tasks of %d steps in %s", tasks, perTask, time.Since(start).Round(time.Millisecond))
	_, err = pool.Exec(ctx, `VACUUM ANALYZE`)
	return err
}

var runID atomic.Int64

// taskerThroughput burns down n one-step tasks with `workers` in-process workers and returns steps/s.
func taskerThroughput(ctx context.Context, pool *pgxpool.Pool, url string, n, perTask, workers, slots int) (float64,
	error) {
	id := runID.Add(1)
	if err := admitNoops(ctx, pool, n, perTask, fmt.Sprintf("tp%d-", id)); err != nil {
		return 0, err
	}
	reg := prometheus.NewRegistry()
	ws := make([]*worker.Worker, workers)
	for i := range ws {
		w, err := worker.Open(ctx, url, worker.Config{Queues: []string{"bench"}, Slots: slots,
			ID: fmt.Sprintf("bench-%d-%d", id, i), Logger: quiet, Registerer: reg})
		if err != nil {
			return 0, err
		}
		defer w.Close()
		w.Handle("noop", func(context.Context, worker.Step) (worker.Result, error) { return nil, nil })
		ws[i] = w
	}
	runCtx, cancel := context.WithCancel(ctx)
	var running sync.WaitGroup
	start := time.Now()
	for _, w := range ws {
		running.Go(func() { _ = w.Run(runCtx) })
	}
	deadline := start.Add(3 * time.Minute)
	for succeeded(reg) < float64(n) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			cancel()
			running.Wait()
			return 0, fmt.Errorf("only %v of %d steps succeeded", succeeded(reg), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	running.Wait()
	var done int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.steps WHERE state = 'succeeded'`).Scan(&done); err != nil {
		return 0, err
	}
	if done != n {
		return 0, fmt.Errorf("%d steps succeeded, want %d", done, n)
	}
	logf("tasker: %d steps, %d workers x %d slots: %s ", n, workers, slots, elapsed.Round(time.Millisecond))
	return float64(n) / elapsed.Seconds(), nil
}

func succeeded(reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == "tasker_worker_steps_succeeded_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// rawPgmq runs `clients` loops of send_batch + read + delete on one queue for d and returns messages/s.
func rawPgmq(ctx context.Context, url string, clients, batch int, d time.Duration) (float64, error) {
	pool, err := store.Open(ctx, url, store.Options{MaxConns: int32(clients)})
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	c := pgmq.New(pool)
	if err := c.CreateQueue(ctx, "raw"); err != nil {
		return 0, err
	}
	if _, err := c.PurgeQueue(ctx, "raw"); err != nil {
		return 0, err
	}
	msgs := make([]json.RawMessage, batch)
	for i := range msgs {
		msgs[i] = json.RawMessage(fmt.Sprintf(`{"task_id":123456,"step_id":%d,"attempt":1}`, i))
	}
	var (
		total    atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range clients {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				if _, err := c.SendBatch(ctx, "raw", msgs, 0); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				read, err := c.Read(ctx, "raw", 30*time.Second, batch)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				ids := make([]int64, len(read))
				for i, m := range read {
					ids[i] = m.ID
				}
				deleted, err := c.DeleteBatch(ctx, "raw", ids)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				total.Add(int64(len(deleted)))
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	elapsed := time.Since(start)
	logf("raw pgmq: %d clients, batch %d: %d messages in %s", clients, batch, total.Load(),
		elapsed.Round(time.Millisecond))
	if _, err := c.DropQueue(ctx, "raw"); err != nil {
		return 0, err
	}
	return float64(total.Load()) / elapsed.Seconds(), nil
}

// sampleWaits samples pg_stat_activity every 10 ms until the returned function is called, which returns how
// often each (state, wait event) was seen among active client backends.
func sampleWaits(ctx context.Context, pool *pgxpool.Pool) func() map[string]int {
	counts := map[string]int{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			rows, err := pool.Query(ctx, `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') || ' ' ||
				coalesce(application_name, '')
				FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()`)
			if err != nil {
				continue
			}
			for rows.Next() {
				var k string
				if rows.Scan(&k) == nil {
					counts[k]++
				}
			}
			rows.Close()
		}
	}()
	return func() map[string]int {
		close(stop)
		<-done
		return counts
	}
}
