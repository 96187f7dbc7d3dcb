package main

import (
	"context"
	"fmt"
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

// riverThroughput burns down n no-op jobs with `clients` River clients (MaxWorkers = slots each) and returns
// jobs/s. tuned lowers FetchCooldown from River's default (100 ms) to its minimum (1 ms).
func riverThroughput(ctx context.Context, pool *pgxpool.Pool, url string, n, clients, slots int,
	tuned bool) (float64, error) {
	if _, err := pool.Exec(ctx, `TRUNCATE river_job, river_leader`); err != nil {
		return 0, err
	}
	inserter, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: quiet})
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
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE river_job`); err != nil {
		return 0, err
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, noopWorker{})
	var completed atomic.Int64
	cs := make([]*river.Client[pgx.Tx], clients)
	for i := range cs {
		// The same pool size as a tasker worker's (worker.Open: queues + 2 + min(slots, 8)).
		p, err := store.Open(ctx, url, store.Options{MaxConns: int32(1 + 2 + min(slots, 8)), ApplicationName: "river"})
		if err != nil {
			return 0, err
		}
		defer p.Close()
		cfg := &river.Config{
			Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: slots}},
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
	start := time.Now()
	for _, c := range cs {
		if err := c.Start(ctx); err != nil {
			return 0, err
		}
	}
	deadline := start.Add(3 * time.Minute)
	for completed.Load() < int64(n) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("only %d of %d jobs completed", completed.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	for _, c := range cs {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = c.Stop(stopCtx)
		cancel()
	}
	var done int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&done); err != nil {
		return 0, err
	}
	if done != n {
		return 0, fmt.Errorf("%d jobs completed in the database, want %d", done, n)
	}
	logf("river: %d jobs, %d clients x %d workers (fetch cooldown %s): %s", n, clients, slots,
		map[bool]string{false: "100ms", true: "1ms"}[tuned], elapsed.Round(time.Millisecond))
	return float64(n) / elapsed.Seconds(), nil
}
