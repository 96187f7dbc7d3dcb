package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// Admission keeps using indexes when a session's plans were cached while the tables were empty: otherwise every
// admission scans the growing tables (0.27 s for 200 ten-step tasks on an empty database, 1.3 s after 18,000
// steps in the same session, before this was fixed). Counted, not timed: after the tables grew, admitting in the
// session that cached its plans early does no sequential scan of tasker's tables.
func TestAdmissionPlansSurviveTableGrowth(t *testing.T) {
	ctx := testContext(t)
	pool := pgtest.NewPool(t)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx) // one session throughout: its cached plans are the point
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	admit := func(prefix string, from, to int) {
		t.Helper()
		_, err := conn.Exec(ctx, `
			SELECT count(*) FROM generate_series($2::integer, $3::integer) AS g
			CROSS JOIN LATERAL tasker.admit(jsonb_build_object('external_key', $1::text || g, 'queue', 'q',
				'steps', (SELECT jsonb_agg(jsonb_build_object('name', 's' || i, 'handler', 'h',
				          'depends_on', CASE WHEN i % 2 = 1 THEN jsonb_build_array('s' || (i - 1)) ELSE '[]' END))
				          FROM generate_series(0, 9) AS i))) AS a`, prefix, from, to)
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 { // plans are cached (generic after five executions) while the tables are nearly empty
		admit("early-", i, i)
	}
	admit("grow-", 0, 1999) // 20,000 steps; no ANALYZE
	before := seqScans(ctx, t, conn, pool)
	for i := range 20 {
		admit("late-", i, i)
	}
	after := seqScans(ctx, t, conn, pool)
	if after != before {
		t.Errorf("admission scanned tasker's tables sequentially %d times after they grew", after-before)
	}
}

// seqScans flushes the statistics of the session conn (the admitting one) and returns the sequential scans of
// tasker's tables so far.
func seqScans(ctx context.Context, t *testing.T, conn *pgxpool.Conn, pool *pgxpool.Pool) int64 {
	t.Helper()
	// The flag is checked when a transaction ends: this one's, or the next one's.
	for _, q := range []string{`SELECT pg_stat_force_next_flush()`, `SELECT 1`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	if err := pool.QueryRow(ctx, `
		SELECT coalesce(sum(seq_scan), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = 'tasker'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
