package engine_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// TestProfileStatements is a tool, not a test: with TASKER_PROFILE=1 it starts a cluster of its own with
// pg_stat_statements tracking nested statements, drives batches of claim(100) + complete_many(100) over 5-step
// chains, and logs the costliest statements inside the protocol functions (time per call). It is how the hot
// path was tuned (docs/architecture.md, "Performance decisions"):
//
//	TASKER_PROFILE=1 go test -run TestProfileStatements -v ./internal/engine
//
// TASKER_PROFILE_BATCH sets the batch size (default 100).
func TestProfileStatements(t *testing.T) {
	if os.Getenv("TASKER_PROFILE") != "1" {
		t.Skip("set TASKER_PROFILE=1 to profile the protocol's statements")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := pgtest.StartCluster(ctx, pgtest.Options{Settings: map[string]string{
		"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all",
		"pg_stat_statements.track_planning": "on"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	pool, err := store.Open(ctx, c.URL, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CREATE EXTENSION pg_stat_statements"); err != nil {
		t.Fatal(err)
	}
	b := &testBundle{ctx: ctx, pool: pool, engine: engine.New(pool, engine.Options{})}
	for i := range 2000 {
		b.admit(t, engine.TaskSpec{ExternalKey: fmt.Sprint("k", i), Queue: "tq", Steps: chainSteps(5)})
	}
	if _, err := pool.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		t.Fatal(err)
	}
	const rounds = 100
	batch := 100
	if v, err := strconv.Atoi(os.Getenv("TASKER_PROFILE_BATCH")); err == nil && v > 0 {
		batch = v
	}
	var claimTime, completeTime time.Duration
	for range rounds {
		t0 := time.Now()
		steps, err := b.engine.Claim(ctx, "tq", batch, time.Minute, "w")
		if err != nil {
			t.Fatal(err)
		}
		claimTime += time.Since(t0)
		cs := make([]engine.Completion, len(steps))
		for i, s := range steps {
			cs[i] = engine.Completion{Lease: s.Lease}
		}
		t0 = time.Now()
		if _, err := b.engine.CompleteMany(ctx, cs); err != nil {
			t.Fatal(err)
		}
		completeTime += time.Since(t0)
	}
	t.Logf("claim(%d): %s per call; complete_many(%d): %s per call", batch, claimTime/rounds, batch,
		completeTime/rounds)
	rows, err := pool.Query(ctx, `
		SELECT calls, total_exec_time / greatest(calls, 1), total_plan_time / greatest(plans, 1), plans, query
		FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 30`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var calls, plans int64
		var exec, plan float64
		var q string
		if err := rows.Scan(&calls, &exec, &plan, &plans, &q); err != nil {
			t.Fatal(err)
		}
		q = strings.Join(strings.Fields(q), " ")
		if len(q) > 110 {
			q = q[:110]
		}
		t.Logf("%5d calls  exec %.3f ms  plan %.3f ms (%d plans)  %s", calls, exec, plan, plans, q)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
