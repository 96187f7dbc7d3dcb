// Command bench measures tasker's workers end to end on a durable PostgreSQL cluster (fsync and synchronous_commit
// on) started for the run, and compares them with the bare protocol, raw pgmq and River on the same database in the
// same run. `make bench` runs it; it ends with one line per figure:
//
//	BENCH <name> <value> <unit>
//
// Throughput figures come from measurement windows, not from burning a backlog down: a backlog of work is queued
// beforehand, the workers start, a warm-up (-warmup, 1 s) is not counted, then the items completed during the
// window (-window, 10 s) give the rate, (c1 - c0) / (t1 - t0); the workers are stopped then, whatever is left of the
// backlog. A run whose backlog ran dry before the end of its window (nothing left to claim) fails: its figure would
// be too low. A run queues max(-backlog, 2 x the best rate so far x (warm-up + window)) items, the best rate of
// the step runs (tasker, bare) for those, of the same River setting for River. Every run starts from empty, vacuumed tables (tasks and their history
// deleted, queue "bench" purged, River's jobs deleted). The log shows the load average at the start and end of each
// window.
//
// Figures (wN, cN: with N workers, connections or clients):
//   - stage_latency_p50, stage_latency_p99, stage_latency_mean (ms), stage_latency_samples: chains of 20 no-op
//     steps run by one worker; for each parent -> child pair, the time from the parent handler's return to the child
//     handler's start (the SDK's completion report, the engine's enqueue and NOTIFY, the LISTEN wake-up and the
//     claim), over -chains chains (after one warm-up chain);
//   - for each worker count W of -workers, back to back so that they see the same machine:
//   - tasker_steps_per_sec_wN: a backlog of no-op steps (tasks of -task-steps steps without dependencies)
//     run by W in-process Worker instances, each with its own pool and LISTEN connection and -slots slots;
//     with -waits, lock_wait_share_wN and lock_any_share_wN: the share of the samples of active backends
//     (pg_stat_activity every 10 ms during the window) waiting on Lock:object or Lock:transactionid, and on any
//     Lock:* event;
//   - bare_steps_per_sec_wN, ratio_tasker_vs_bare_wN: the same backlog run by the protocol alone, W goroutines
//     each with one connection looping claim(100 messages) + complete_many (sleeping 1 ms when a claim returns
//     nothing); with -waits, bare_lock_wait_share_wN and bare_lock_any_share_wN;
//   - pgmq_raw_msgs_per_sec_cN, ratio_tasker_vs_pgmq_raw_wN: W concurrent clients looping send_batch + read +
//     delete of -batch messages (window -raw-duration; no backlog);
//   - river_tuned_jobs_per_sec_wN, ratio_tasker_vs_river_tuned_wN: a backlog of no-op jobs run by W River
//     clients, each with its own pool (sized like a worker's), MaxWorkers = -slots and FetchCooldown 1 ms
//     (-river-tuned); with -river-default also river_jobs_per_sec_wN, ratio_tasker_vs_river_wN with River's
//     defaults (FetchCooldown 100 ms);
//   - then, with W = -fanout-workers (default 8; 0 skips them): tasker_fanout1000_steps_per_sec_wN and
//     tasker_single_steps_per_sec_wN, the tasker throughput with tasks of 1,000 independent steps and with one-step
//     tasks, and ratio_fanout1000_vs_single_wN;
//   - then, with W = -priority-workers (default 8; 0 skips it): tasker_prioritized_steps_per_sec_wN, the tasker
//     throughput on a prioritized queue (tasks of priority 0 and 1 alternating), and ratio_prioritized_vs_plain_wN
//     against tasker_steps_per_sec_wN (a queue whose tasks all have priority 0 stays plain: that run is the cost
//     of priorities to those who do not use them);
//   - best over the worker counts: tasker_steps_per_sec_best, bare_steps_per_sec_best,
//     pgmq_raw_msgs_per_sec_best, ratio_tasker_vs_pgmq_raw_best (best against best), river_tuned_jobs_per_sec_best,
//     ratio_tasker_best_vs_river_tuned_best, and with -river-default river_jobs_per_sec_best,
//     ratio_tasker_vs_river_best.
package main

import (
	"cmp"
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
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

type options struct {
	backlog       int
	taskSteps     int
	workers       []int
	slots         int
	chains        int
	batch         int
	warmup        time.Duration
	window        time.Duration
	rawDuration   time.Duration
	river         bool
	riverTuned    bool
	riverDefault  bool
	fanoutWorkers int
	// priorityWorkers: worker count of the prioritized-queue run (0: none).
	priorityWorkers int
	databaseURL     string
	cpuProfile      string
	waits           bool
	// tracing adds, at each worker count, a tasker run with tracing on (docs/tracing.md).
	tracing bool
}

func main() {
	var o options
	var workers string
	flag.IntVar(&o.backlog, "backlog", 200000, "steps (River: jobs) queued before each run at least; more when an "+
		"earlier run went fast: 2 x best rate x (warm-up + window)")
	flag.IntVar(&o.taskSteps, "task-steps", 10, "independent steps per task in the throughput runs")
	flag.StringVar(&workers, "workers", "1,2,4,8,16", "worker counts of the throughput runs")
	flag.IntVar(&o.slots, "slots", 100, "slots per worker (River: MaxWorkers per client)")
	flag.IntVar(&o.chains, "chains", 25, "20-step chains for the stage latency")
	flag.IntVar(&o.batch, "batch", 100, "messages per raw pgmq round (send_batch, read, delete)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up of each throughput run, not counted")
	flag.DurationVar(&o.window, "window", 10*time.Second, "measurement window of each throughput run")
	flag.DurationVar(&o.rawDuration, "raw-duration", 0, "measurement window of each raw pgmq run (default -window)")
	flag.BoolVar(&o.river, "river", true, "run the River comparison")
	flag.BoolVar(&o.riverTuned, "river-tuned", true, "run River with FetchCooldown 1ms (its default is 100ms)")
	flag.BoolVar(&o.riverDefault, "river-default", false, "also run River with its default settings")
	flag.IntVar(&o.priorityWorkers, "priority-workers", 8,
		"worker count of the run on a prioritized queue (tasks of priority 0 and 1), compared with the plain run "+
			"of the same worker count; 0 skips it")
	flag.IntVar(&o.fanoutWorkers, "fanout-workers", 8,
		"worker count of the fan-out runs (tasks of 1,000 steps against one-step tasks); 0 skips them")
	flag.StringVar(&o.databaseURL, "database-url", "",
		"use this (empty, migratable) database instead of starting a durable cluster")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write CPU profiles of the tasker throughput windows to FILE.wN")
	flag.BoolVar(&o.tracing, "tracing", false, "also run tasker with tracing on at each worker count: tasks "+
		"with a trace context, workers exporting a span per step over OTLP/HTTP to a collector in this process that "+
		"discards them (the plain runs are tracing off)")
	flag.BoolVar(&o.waits, "waits", false, "sample the wait events of active backends during the tasker and bare windows")
	flag.Parse()
	for _, s := range strings.Split(workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("bad -workers %q", workers)
		}
		o.workers = append(o.workers, n)
	}
	if o.rawDuration == 0 {
		o.rawDuration = o.window
	}
	if o.backlog < 1 || o.taskSteps < 1 || o.window <= 0 || o.rawDuration <= 0 || o.warmup < 0 {
		fatalf("-backlog, -task-steps, -window and -raw-duration must be positive, -warmup not negative")
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

// bench is what the throughput runs share.
type bench struct {
	o     options
	url   string
	pool  *pgxpool.Pool
	rates map[string]float64 // the best rate of each system so far, to size its next backlog
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
	if o.window < 10*time.Second || o.rawDuration < 10*time.Second {
		logf("warning: windows shorter than 10 s give unstable figures")
	}

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
	add("stage_latency_samples", float64(len(lat)), "samples")

	// 2. Throughput: for each worker count, tasker, the bare protocol, raw pgmq and River back to back, so that
	// they see the same conditions (the machine may be shared).
	if o.river {
		if err := migrateRiver(ctx, pool); err != nil {
			return fmt.Errorf("river migrate: %w", err)
		}
	}
	b := &bench{o: o, url: url, pool: pool, rates: map[string]float64{}}
	var bestSteps, bestBare, bestRaw, bestRiver, bestRiverTuned float64
	taskerRates := map[int]float64{} // by worker count
	for _, w := range o.workers {
		logf("--- %d workers; load average %s", w, loadAverage())
		profile := ""
		if o.cpuProfile != "" {
			profile = fmt.Sprintf("%s.w%d", o.cpuProfile, w)
		}
		tw, err := b.taskerThroughput(ctx, "tasker", o.taskSteps, w, o.waits, profile, 0, nil)
		if err != nil {
			return fmt.Errorf("tasker throughput with %d workers: %w", w, err)
		}
		steps := tw.rate
		taskerRates[w] = steps
		bestSteps = max(bestSteps, steps)
		add(fmt.Sprintf("tasker_steps_per_sec_w%d", w), steps, "steps/s")
		if o.waits {
			objTx, anyLock := lockShares(tw.waits)
			add(fmt.Sprintf("lock_wait_share_w%d", w), objTx, "fraction")
			add(fmt.Sprintf("lock_any_share_w%d", w), anyLock, "fraction")
		}

		if o.tracing {
			col, err := startCollector()
			if err != nil {
				return err
			}
			tr, err := b.taskerThroughput(ctx, "tasker_traced", o.taskSteps, w, false, "", 0, col)
			_ = col.srv.Close()
			if err != nil {
				return fmt.Errorf("tasker throughput with tracing and %d workers: %w", w, err)
			}
			add(fmt.Sprintf("tasker_traced_steps_per_sec_w%d", w), tr.rate, "steps/s")
			add(fmt.Sprintf("ratio_traced_vs_plain_w%d", w), tr.rate/steps, "x")
			logf("tracing: %d export requests, %.0f bytes of spans per step exported", col.requests.Load(),
				float64(col.bytes.Load())/max(1, tr.completed))
		}

		bw, err := b.bareThroughput(ctx, w, o.waits)
		if err != nil {
			return fmt.Errorf("bare protocol with %d connections: %w", w, err)
		}
		bestBare = max(bestBare, bw.rate)
		add(fmt.Sprintf("bare_steps_per_sec_w%d", w), bw.rate, "steps/s")
		add(fmt.Sprintf("ratio_tasker_vs_bare_w%d", w), steps/bw.rate, "x")
		if o.waits {
			objTx, anyLock := lockShares(bw.waits)
			add(fmt.Sprintf("bare_lock_wait_share_w%d", w), objTx, "fraction")
			add(fmt.Sprintf("bare_lock_any_share_w%d", w), anyLock, "fraction")
		}

		raw, err := b.rawPgmq(ctx, w)
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
			if tuned && !o.riverTuned || !tuned && !o.riverDefault {
				continue
			}
			name := riverSystem(tuned)
			r, err := b.riverThroughput(ctx, w, tuned)
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

	// 3. Fan-out: the same tasker run with tasks of 1,000 steps and with one-step tasks.
	if w := o.fanoutWorkers; w > 0 {
		logf("--- fan-out, %d workers; load average %s", w, loadAverage())
		fan, err := b.taskerThroughput(ctx, "tasker_fanout1000", 1000, w, false, "", 0, nil)
		if err != nil {
			return fmt.Errorf("tasker throughput with 1,000-step tasks and %d workers: %w", w, err)
		}
		single, err := b.taskerThroughput(ctx, "tasker_single", 1, w, false, "", 0, nil)
		if err != nil {
			return fmt.Errorf("tasker throughput with one-step tasks and %d workers: %w", w, err)
		}
		add(fmt.Sprintf("tasker_fanout1000_steps_per_sec_w%d", w), fan.rate, "steps/s")
		add(fmt.Sprintf("tasker_single_steps_per_sec_w%d", w), single.rate, "steps/s")
		add(fmt.Sprintf("ratio_fanout1000_vs_single_w%d", w), fan.rate/single.rate, "x")
	}

	// 4. The priority path: the same tasker run on a prioritized queue (tasks of priority 0 and 1 alternating),
	// against the plain queue of the main run with the same worker count.
	if w := o.priorityWorkers; w > 0 {
		logf("--- priorities, %d workers; load average %s", w, loadAverage())
		prio, err := b.taskerThroughput(ctx, "tasker_prioritized", o.taskSteps, w, false, "", 2, nil)
		if err != nil {
			return fmt.Errorf("tasker throughput on a prioritized queue with %d workers: %w", w, err)
		}
		add(fmt.Sprintf("tasker_prioritized_steps_per_sec_w%d", w), prio.rate, "steps/s")
		if plain, ok := taskerRates[w]; ok {
			add(fmt.Sprintf("ratio_prioritized_vs_plain_w%d", w), prio.rate/plain, "x")
		}
	}

	add("tasker_steps_per_sec_best", bestSteps, "steps/s")
	add("bare_steps_per_sec_best", bestBare, "steps/s")
	add("pgmq_raw_msgs_per_sec_best", bestRaw, "msgs/s")
	add("ratio_tasker_vs_pgmq_raw_best", bestSteps/bestRaw, "x")
	if o.river && o.riverDefault {
		add("river_jobs_per_sec_best", bestRiver, "jobs/s")
		add("ratio_tasker_vs_river_best", bestSteps/bestRiver, "x")
	}
	if o.river && o.riverTuned {
		add("river_tuned_jobs_per_sec_best", bestRiverTuned, "jobs/s")
		add("ratio_tasker_best_vs_river_tuned_best", bestSteps/bestRiverTuned, "x")
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

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

// meter says how to follow a throughput run that is under way.
type meter struct {
	name      string                               // for the log and the errors
	completed func() float64                       // items completed so far
	left      func(context.Context) (int64, error) // items left to claim; nil: the run has no backlog
	window    time.Duration                        // default -window
	waits     bool                                 // sample the wait events of active backends during the window
	profile   string                               // write a CPU profile of the window to this file
}

// window is what measure saw.
type window struct {
	rate  float64        // items completed per second
	waits map[string]int // with meter.waits, see sampleWaits
	// completed is what the whole run completed, warm-up and drain included (set by taskerThroughput).
	completed float64
}

// measure follows a run whose workers have just started: it waits the warm-up, then counts the items completed
// during the window. The run's backlog must not run dry before the end of the window.
func (b *bench) measure(ctx context.Context, m meter) (window, error) {
	d := cmp.Or(m.window, b.o.window)
	if err := sleep(ctx, b.o.warmup); err != nil {
		return window{}, err
	}
	var stopSampling func() map[string]int
	if m.waits {
		stopSampling = sampleWaits(ctx, b.pool)
	}
	if m.profile != "" {
		f, err := os.Create(m.profile)
		if err != nil {
			return window{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return window{}, err
		}
	}
	load0, c0, t0 := loadAverage(), m.completed(), time.Now()
	err := sleep(ctx, d)
	c1, t1 := m.completed(), time.Now()
	load1 := loadAverage()
	if m.profile != "" {
		pprof.StopCPUProfile()
	}
	var w window
	if stopSampling != nil {
		w.waits = stopSampling()
	}
	left := int64(-1)
	if m.left != nil && err == nil {
		left, err = m.left(ctx)
	}
	if err != nil {
		return window{}, err
	}
	w.rate = (c1 - c0) / t1.Sub(t0).Seconds()
	if left == 0 {
		return window{}, fmt.Errorf("%s: the backlog ran dry before the end of the window (nothing left to claim; "+
			"%.0f/s in the window): the figure would be too low, raise -backlog", m.name, w.rate)
	}
	leftNote := ""
	if left > 0 {
		leftNote = fmt.Sprintf("; %d left to claim", left)
	}
	logf("%s: %.0f in %s = %.0f/s; load average %s at the start of the window, %s at the end%s", m.name, c1-c0,
		t1.Sub(t0).Round(time.Millisecond), w.rate, load0, load1, leftNote)
	if m.waits {
		logf("wait events of active backends in the window (samples every 10 ms): %v", w.waits)
	}
	return w, nil
}

// backlog returns how many items to queue before a run of system (a multiple of perTask).
func (b *bench) backlog(system string, perTask int) int {
	// Never below -backlog; above it when a run of this system (or, for the step runs, of any step run: they
	// share the engine's limits) went fast enough to need more, with room for a run twice as fast.
	r := b.rates[system]
	if system != "river" && system != "river_tuned" {
		for s, v := range b.rates {
			if s != "river" && s != "river_tuned" {
				r = max(r, v)
			}
		}
	}
	n := max(b.o.backlog, int(2*r*(b.o.warmup+b.o.window).Seconds()))
	return (n + perTask - 1) / perTask * perTask
}

// reset empties what the throughput runs use (tasks and their history, the messages of queue "bench", River's
// jobs) and vacuums, so that each run starts from empty tables.
func (b *bench) reset(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, `DELETE FROM tasker.tasks; DELETE FROM tasker.step_transitions;
		DELETE FROM tasker.task_transitions; DELETE FROM tasker.workers`)
	if err != nil {
		return err
	}
	var queue, river bool
	if err := b.pool.QueryRow(ctx, `SELECT to_regclass('pgmq.q_bench') IS NOT NULL,
		to_regclass('river_job') IS NOT NULL`).Scan(&queue, &river); err != nil {
		return err
	}
	if queue {
		// Empty, and plain again if a run made it prioritized.
		if _, err := b.pool.Exec(ctx, `SELECT pgmq.purge_queue('bench'::text);
			UPDATE tasker.queues SET prioritized = false WHERE name = 'bench';
			DROP INDEX IF EXISTS pgmq.q_bench_priority_idx`); err != nil {
			return err
		}
	}
	if river {
		if _, err := b.pool.Exec(ctx, `TRUNCATE river_job, river_leader`); err != nil {
			return err
		}
	}
	_, err = b.pool.Exec(ctx, `VACUUM ANALYZE`)
	return err
}

// admitNoops admits n no-op steps on queue "bench", as tasks of perTask independent steps (in large statements:
// admission is not measured). With priorities > 1, task i has priority i % priorities (which makes the queue
// prioritized); else every task has priority 0.
//
// With traced, each task carries a trace context (a W3C traceparent of its own trace), as Tasks admitted by an
// operator that traces do.
func admitNoops(ctx context.Context, pool *pgxpool.Pool, n, perTask int, prefix string, priorities int, traced bool) error {
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
		_, err := conn.Exec(ctx, `
			SELECT count(*)
			FROM generate_series($2::integer, $3::integer) AS g
			CROSS JOIN LATERAL tasker.admit(jsonb_build_object(
				'external_key', $1::text || g, 'queue', 'bench', 'steps', $4::jsonb,
				'priority', CASE WHEN $5::integer > 1 THEN g % $5::integer ELSE 0 END,
				'trace_context', CASE WHEN $6::boolean THEN jsonb_build_object('traceparent',
					'00-' || md5($1::text || g) || '-' || left(md5(g::text), 16) || '-01') END)) AS a`,
			prefix, from, min(from+chunk, tasks)-1, doc, priorities, traced)
		if err != nil {
			return err
		}
	}
	logf("admitted %d tasks of %d steps in %s", tasks, perTask, time.Since(start).Round(time.Millisecond))
	_, err = pool.Exec(ctx, `VACUUM ANALYZE`)
	return err
}

var runID atomic.Int64

// queueLeft returns how many messages of queue "bench" can be claimed now.
func (b *bench) queueLeft(ctx context.Context) (int64, error) {
	var n int64
	err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pgmq.q_bench WHERE vt <= clock_timestamp()`).Scan(&n)
	return n, err
}

// succeededSteps returns how many steps succeeded according to the database.
func (b *bench) succeededSteps(ctx context.Context) (int64, error) {
	var n int64
	err := b.pool.QueryRow(ctx, `SELECT count(*) FROM tasker.steps WHERE state = 'succeeded'`).Scan(&n)
	return n, err
}

// taskerThroughput queues a backlog of no-op steps (tasks of perTask independent steps), runs `workers`
// in-process workers on it and measures the steps they complete per second. system names the run's kind for the
// backlog sizing.
//
// With col, tracing is on: the tasks carry trace contexts and every worker exports its spans to col.
func (b *bench) taskerThroughput(ctx context.Context, system string, perTask, workers int, waits bool,
	profile string, priorities int, col *collector) (window, error) {
	if err := b.reset(ctx); err != nil {
		return window{}, err
	}
	id := runID.Add(1)
	n := b.backlog(system, perTask)
	if err := admitNoops(ctx, b.pool, n, perTask, fmt.Sprintf("tp%d-", id), priorities, col != nil); err != nil {
		return window{}, err
	}
	reg := prometheus.NewRegistry()
	ws := make([]*worker.Worker, workers)
	for i := range ws {
		cfg := worker.Config{Queues: []string{"bench"}, Slots: b.o.slots, ID: fmt.Sprintf("bench-%d-%d", id, i),
			Logger: quiet, Registerer: reg}
		if col != nil {
			tp, err := col.provider(ctx, cfg.ID)
			if err != nil {
				return window{}, err
			}
			defer func() { _ = tp.Shutdown(context.Background()) }()
			cfg.TracerProvider = tp
		}
		w, err := worker.Open(ctx, b.url, cfg)
		if err != nil {
			return window{}, err
		}
		defer w.Close()
		w.Handle("noop", func(context.Context, worker.Step) (worker.Result, error) { return nil, nil })
		ws[i] = w
	}
	runCtx, cancel := context.WithCancel(ctx)
	var running sync.WaitGroup
	for _, w := range ws {
		running.Go(func() { _ = w.Run(runCtx) })
	}
	win, err := b.measure(ctx, meter{
		name: fmt.Sprintf("%s: %d workers x %d slots, backlog %d steps in tasks of %d", system, workers,
			b.o.slots, n, perTask),
		completed: func() float64 { return succeeded(reg) },
		left:      b.queueLeft,
		waits:     waits,
		profile:   profile,
	})
	cancel()
	running.Wait()
	if err != nil {
		return window{}, err
	}
	done, err := b.succeededSteps(ctx)
	if err != nil {
		return window{}, err
	}
	if counted := int64(succeeded(reg)); done != counted {
		return window{}, fmt.Errorf("%d steps succeeded in the database, the workers counted %d", done, counted)
	}
	b.rates[system] = max(b.rates[system], win.rate)
	win.completed = float64(done)
	return win, nil
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

// bareThroughput measures the worker protocol without the SDK on the same backlog as taskerThroughput's:
// `workers` goroutines, each with its own connection, loop claim + complete_many.
func (b *bench) bareThroughput(ctx context.Context, workers int, waits bool) (window, error) {
	if err := b.reset(ctx); err != nil {
		return window{}, err
	}
	id := runID.Add(1)
	n := b.backlog("bare", b.o.taskSteps)
	if err := admitNoops(ctx, b.pool, n, b.o.taskSteps, fmt.Sprintf("bare%d-", id), 0, false); err != nil {
		return window{}, err
	}
	cfg, err := store.Config(b.url, store.Options{ApplicationName: "bare"})
	if err != nil {
		return window{}, err
	}
	conns := make([]*pgx.Conn, workers)
	for i := range conns {
		c, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
		if err != nil {
			return window{}, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		conns[i] = c
	}
	var (
		completed atomic.Int64
		stop      atomic.Bool
		firstErr  error
		errOnce   sync.Once
		running   sync.WaitGroup
	)
	for i, c := range conns {
		running.Go(func() {
			if err := bareLoop(ctx, c, fmt.Sprintf("bare-%d-%d", id, i), &stop, &completed); err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		})
	}
	win, err := b.measure(ctx, meter{
		name:      fmt.Sprintf("bare: %d connections, backlog %d steps in tasks of %d", workers, n, b.o.taskSteps),
		completed: func() float64 { return float64(completed.Load()) },
		left:      b.queueLeft,
		waits:     waits,
	})
	stop.Store(true)
	running.Wait()
	if err = cmp.Or(firstErr, err); err != nil {
		return window{}, err
	}
	done, err := b.succeededSteps(ctx)
	if err != nil {
		return window{}, err
	}
	if done != completed.Load() {
		return window{}, fmt.Errorf("%d steps succeeded in the database, complete_many accepted %d", done,
			completed.Load())
	}
	b.rates["bare"] = max(b.rates["bare"], win.rate)
	return win, nil
}

// bareLoop claims up to 100 steps of queue "bench" and completes them with one complete_many, until stop; it
// sleeps 1 ms when a claim returns nothing. completed counts the successes complete_many accepted.
func bareLoop(ctx context.Context, conn *pgx.Conn, workerID string, stop *atomic.Bool,
	completed *atomic.Int64) error {
	var leases []pgtype.UUID
	for !stop.Load() {
		rows, err := conn.Query(ctx,
			`SELECT step_id, lease FROM tasker.claim('bench'::text, 100::integer, 30::integer, $1::text)`, workerID)
		if err != nil {
			return err
		}
		leases = leases[:0]
		var stepID int64
		var lease pgtype.UUID
		if _, err := pgx.ForEachRow(rows, []any{&stepID, &lease}, func() error {
			leases = append(leases, lease)
			return nil
		}); err != nil {
			return err
		}
		if len(leases) == 0 {
			if err := sleep(ctx, time.Millisecond); err != nil {
				return err
			}
			continue
		}
		var ok int64
		if err := conn.QueryRow(ctx,
			`SELECT count(*) FILTER (WHERE ok) FROM tasker.complete_many($1::uuid[], NULL::jsonb[])`,
			leases).Scan(&ok); err != nil {
			return err
		}
		completed.Add(ok)
	}
	return nil
}

// rawPgmq runs `clients` loops of send_batch + read + delete of -batch messages on one queue and returns the
// messages deleted per second in a window of -raw-duration.
func (b *bench) rawPgmq(ctx context.Context, clients int) (float64, error) {
	if err := b.reset(ctx); err != nil {
		return 0, err
	}
	pool, err := store.Open(ctx, b.url, store.Options{MaxConns: int32(clients)})
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
	msgs := make([]json.RawMessage, b.o.batch)
	for i := range msgs {
		msgs[i] = json.RawMessage(fmt.Sprintf(`{"task_id":123456,"step_id":%d,"attempt":1}`, i))
	}
	var (
		total    atomic.Int64
		stop     atomic.Bool
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	for range clients {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				if _, err := c.SendBatch(ctx, "raw", msgs, 0); err != nil {
					fail(err)
					return
				}
				read, err := c.Read(ctx, "raw", 30*time.Second, b.o.batch)
				if err != nil {
					fail(err)
					return
				}
				ids := make([]int64, len(read))
				for i, m := range read {
					ids[i] = m.ID
				}
				deleted, err := c.DeleteBatch(ctx, "raw", ids)
				if err != nil {
					fail(err)
					return
				}
				total.Add(int64(len(deleted)))
			}
		})
	}
	win, err := b.measure(ctx, meter{
		name:      fmt.Sprintf("raw pgmq: %d clients, batch %d", clients, b.o.batch),
		completed: func() float64 { return float64(total.Load()) },
		window:    b.o.rawDuration,
	})
	stop.Store(true)
	wg.Wait()
	if err = cmp.Or(firstErr, err); err != nil {
		return 0, err
	}
	if _, err := c.DropQueue(ctx, "raw"); err != nil {
		return 0, err
	}
	return win.rate, nil
}

// sampleWaits samples pg_stat_activity every 10 ms until the returned function is called, which returns how
// often each "<wait event or CPU> <application name>" was seen among the active client backends of the database.
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
				FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend'
				AND datname = current_database() AND pid <> pg_backend_pid()`)
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

// lockShares returns the share of the samples of sampleWaits waiting on Lock:object (the NOTIFY commit lock) or
// Lock:transactionid (another transaction's row lock), and on any Lock:* event.
func lockShares(waits map[string]int) (objTx, anyLock float64) {
	var all, ot, locks int
	for k, n := range waits {
		event, _, _ := strings.Cut(k, " ")
		all += n
		if event == "Lock:object" || event == "Lock:transactionid" {
			ot += n
		}
		if strings.HasPrefix(event, "Lock:") {
			locks += n
		}
	}
	if all == 0 {
		return 0, 0
	}
	return float64(ot) / float64(all), float64(locks) / float64(all)
}
