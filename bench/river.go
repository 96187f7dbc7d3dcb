package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/tasker-operator/tasker-operator/internal/store"
)

// noopArgs is River's no-op job.
type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func migrateRiver(ctx context.Context, pool *pgxpool.Pool) error {
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: quiet})
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// riverSystem names River's runs in the figures and for the backlog sizing.
func riverSystem(tuned bool) string {
	if tuned {
		return "river_tuned"
	}
	return "river"
}

// riverThroughput inserts a backlog of no-op jobs, runs `clients` River clients (MaxWorkers = -slots each) on it
// and measures the jobs they complete per second. tuned lowers FetchCooldown from River's default (100 ms) to its
// minimum (1 ms).
func (b *bench) riverThroughput(ctx context.Context, clients int, tuned bool) (float64, error) {
	system := riverSystem(tuned)
	if err := b.reset(ctx); err != nil {
		return 0, err
	}
	n := b.backlog(system, 1)
	inserter, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{Logger: quiet})
	if err != nil {
		return 0, err
	}
	const chunk = 5000
	for from := 0; from < n; from += chunk {
		params := make([]river.InsertManyParams, min(chunk, n-from))
		for i := range params {
			params[i] = river.InsertManyParams{Args: noopArgs{}}
		}
		if _, err := inserter.InsertManyFast(ctx, params); err != nil {
			return 0, err
		}
	}
	if _, err := b.pool.Exec(ctx, `VACUUM ANALYZE river_job`); err != nil {
		return 0, err
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, noopWorker{})
	// Completed jobs are counted from the clients' JobCompleted events.
	var completed atomic.Int64
	cs := make([]*river.Client[pgx.Tx], clients)
	for i := range cs {
		// The same pool size as a tasker worker's (worker.Open: queues + 2 + min(slots, 8)).
		p, err := store.Open(ctx, b.url, store.Options{MaxConns: int32(1 + 2 + min(b.o.slots, 8)),
			ApplicationName: "river"})
		if err != nil {
			return 0, err
		}
		defer p.Close()
		cfg := &river.Config{
			Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: b.o.slots}},
			Workers: workers,
			Logger:  quiet,
		}
		if tuned {
			cfg.FetchCooldown = river.FetchCooldownMin
		}
		c, err := river.NewClient(riverpgxv5.New(p), cfg)
		if err != nil {
			return 0, err
		}
		events, cancel := c.SubscribeConfig(&river.SubscribeConfig{ChanSize: n,
			Kinds: []river.EventKind{river.EventKindJobCompleted}})
		defer cancel()
		go func() {
			for range events {
				completed.Add(1)
			}
		}()
		cs[i] = c
	}
	stopAll := sync.OnceFunc(func() {
		for _, c := range cs {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_ = c.Stop(stopCtx)
			cancel()
		}
	})
	defer stopAll()
	for _, c := range cs {
		if err := c.Start(ctx); err != nil {
			return 0, err
		}
	}
	win, err := b.measure(ctx, meter{
		name: fmt.Sprintf("%s: %d clients x %d workers (fetch cooldown %s), backlog %d jobs", system, clients,
			b.o.slots, map[bool]string{false: "100ms", true: "1ms"}[tuned], n),
		completed: func() float64 { return float64(completed.Load()) },
		left: func(ctx context.Context) (int64, error) {
			var left int64
			err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'available'`).Scan(&left)
			return left, err
		},
	})
	stopAll()
	if err != nil {
		return 0, err
	}
	var done int64
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&done); err != nil {
		return 0, err
	}
	if counted := completed.Load(); done < counted {
		return 0, fmt.Errorf("%d jobs completed in the database, %d JobCompleted events", done, counted)
	}
	b.rates[system] = max(b.rates[system], win.rate)
	return win.rate, nil
}
