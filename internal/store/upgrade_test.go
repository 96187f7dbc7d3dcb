package store_test

import (
	"context"
	_ "embed"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// schemaV5 is tasker's schema as migrations 0001-0005 of the release before function files left it.
//
//go:embed testdata/schema_v5.sql
var schemaV5 string

// restoreV5 makes pool's database what that release's Migrate made it.
func restoreV5(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.Hijack() // the dump changes session settings (search_path): never give this one back
	defer func() { _ = conn.Close(ctx) }()
	if _, err := pgmq.Install(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, schemaV5); err != nil {
		t.Fatal(err)
	}
}

type claimed struct {
	lease pgtype.UUID
	name  string
}

func claimAll(ctx context.Context, t *testing.T, pool *pgxpool.Pool, queue string, n int) []claimed {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT lease, step_name FROM tasker.claim($1::text, $2::integer, 30::integer, 'w'::text)`,
		queue, n)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		return c, r.Scan(&c.lease, &c.name)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func completeAll(ctx context.Context, t *testing.T, pool *pgxpool.Pool, cs []claimed) {
	t.Helper()
	leases := make([]pgtype.UUID, len(cs))
	results := make([]string, len(cs))
	for i, c := range cs {
		leases[i] = c.lease
		results[i] = fmt.Sprintf(`{"by":%q}`, c.name)
	}
	var ok int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE ok) FROM tasker.complete_many($1::uuid[], $2::jsonb[])`,
		leases, results).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	if ok != len(cs) {
		t.Fatalf("%d of %d completions accepted", ok, len(cs))
	}
}

// A database created by migrations 0001-0005, with tasks in flight (steps enqueued, claimed and pending), is
// migrated to the current layout, and its tasks finish under the current functions; the claims made before the
// upgrade are honoured.
func TestUpgradeFromV5WithLiveTasks(t *testing.T) {
	ctx := testContext(t)
	pool := pgtest.NewPool(t)
	restoreV5(ctx, t, pool)
	if v, err := store.Version(ctx, pool); err != nil || v != 5 {
		t.Fatalf("restored version %d (%v), want 5", v, err)
	}
	var ids []int64
	for i, spec := range []string{
		`[{"name":"a","handler":"h"},{"name":"b","handler":"h","depends_on":["a"]},{"name":"c","handler":"h","depends_on":["b"]}]`,
		`[{"name":"a","handler":"h"},{"name":"b","handler":"h","depends_on":["a"]},{"name":"c","handler":"h","depends_on":["a"]},
		  {"name":"d","handler":"h","depends_on":["b","c"]}]`,
		`[{"name":"a","handler":"h"},{"name":"b","handler":"h"}]`,
	} {
		var id int64
		if err := pool.QueryRow(ctx, `SELECT task_id FROM tasker.admit($1::jsonb)`,
			fmt.Sprintf(`{"external_key":"up-%d","queue":"up","steps":%s}`, i, spec)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Under the old functions: some steps claimed and finished, some claimed and still running.
	first := claimAll(ctx, t, pool, "up", 2)
	completeAll(ctx, t, pool, first)
	running := claimAll(ctx, t, pool, "up", 3)
	if len(first) != 2 || len(running) != 3 {
		t.Fatalf("claimed %d then %d steps before the upgrade, want 2 and 3", len(first), len(running))
	}

	// A worker role granted under the old release.
	role := fmt.Sprintf("up_worker_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, "DROP OWNED BY "+role)
		_, _ = pool.Exec(ctx, "DROP ROLE IF EXISTS "+role)
	})
	if _, err := pool.Exec(ctx, "CREATE ROLE "+role); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT tasker.grant_worker($1, ARRAY['up'])`, role); err != nil {
		t.Fatal(err)
	}

	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if v, err := store.Version(ctx, pool); err != nil || v != store.LatestVersion() {
		t.Fatalf("version %d (%v) after the upgrade, want %d", v, err, store.LatestVersion())
	}
	// It may call the worker functions added since.
	var missing []string
	if err := pool.QueryRow(ctx, `
		SELECT coalesce(array_agg(w.name ORDER BY w.name), '{}') FROM tasker.worker_functions AS w
		WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_proc AS p
		                  WHERE p.proname = w.name AND p.pronamespace = 'tasker'::regnamespace
		                    AND has_function_privilege($1, p.oid, 'EXECUTE'))`, role).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("worker role granted before the upgrade cannot execute %v", missing)
	}

	completeAll(ctx, t, pool, running) // leases of the old release
	for range 20 {
		cs := claimAll(ctx, t, pool, "up", 10)
		if len(cs) == 0 {
			break
		}
		completeAll(ctx, t, pool, cs)
	}
	for _, id := range ids {
		var state string
		var unfinished int
		if err := pool.QueryRow(ctx, `SELECT state, (SELECT count(*) FROM tasker.steps WHERE task_id = $1 AND state <> 'succeeded')
			FROM tasker.tasks WHERE id = $1`, id).Scan(&state, &unfinished); err != nil {
			t.Fatal(err)
		}
		if state != "succeeded" || unfinished != 0 {
			t.Errorf("task %d is %s with %d unfinished steps after the upgrade", id, state, unfinished)
		}
	}
	// Every step succeeded exactly once in its history, across the upgrade.
	var bad int
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FROM tasker.steps AS s
		WHERE (SELECT count(*) FROM tasker.step_transitions AS x WHERE x.step_id = s.id AND x.to_state = 'succeeded') <> 1`).
		Scan(&bad); err != nil || bad != 0 {
		t.Errorf("%d steps without exactly one succeeded transition (%v)", bad, err)
	}
}
