package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

type schemaBundle struct {
	ctx    context.Context
	pool   *pgxpool.Pool
	taskID int64
	stepID int64 // step "a", enqueued
}

// setupSchema migrates a database and admits one task (a -> b) through tasker.admit.
func setupSchema(t *testing.T) *schemaBundle {
	t.Helper()
	ctx := testContext(t)
	pool := pgtest.NewPool(t)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	b := &schemaBundle{ctx: ctx, pool: pool}
	err := pool.QueryRow(ctx, `SELECT task_id FROM tasker.admit($1::jsonb)`,
		`{"external_key":"k1","queue":"q","steps":[{"name":"a","handler":"h"},{"name":"b","handler":"h","depends_on":["a"]}]}`).
		Scan(&b.taskID)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT id FROM tasker.steps WHERE task_id = $1 AND name = 'a'`, b.taskID).Scan(&b.stepID); err != nil {
		t.Fatal(err)
	}
	return b
}

func wantViolation(t *testing.T, err error, constraint string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != constraint {
		t.Errorf("got %v, want a violation of %s", err, constraint)
	}
}

func TestCheckConstraintsRejectIllegalStates(t *testing.T) {
	b := setupSchema(t)
	for _, tc := range []struct {
		sql        string
		constraint string
	}{
		{`UPDATE tasker.steps SET state = 'bogus' WHERE id = $1`, "steps_state_check"},
		{`UPDATE tasker.steps SET state = 'running' WHERE id = $1`, "steps_lifecycle_check"},   // no lease
		{`UPDATE tasker.steps SET state = 'succeeded' WHERE id = $1`, "steps_lifecycle_check"}, // no finished_at
		{`UPDATE tasker.steps SET finished_at = now() WHERE id = $1`, "steps_lifecycle_check"}, // enqueued yet finished
		{`UPDATE tasker.steps SET msg_id = NULL WHERE id = $1`, "steps_lifecycle_check"},       // queued without a message
		{`UPDATE tasker.steps SET state = 'retrying' WHERE id = $1`, "steps_lifecycle_check"},  // no next attempt time
		{`UPDATE tasker.steps SET attempts = -1 WHERE id = $1`, "steps_counts_check"},
		{`UPDATE tasker.steps SET attempts = max_attempts + 1 WHERE id = $1`, "steps_counts_check"},
		{`UPDATE tasker.steps SET remaining_parents = remaining_parents - 1 WHERE id = $1`, "steps_counts_check"},
		{`UPDATE tasker.tasks SET state = 'done' WHERE id = (SELECT task_id FROM tasker.steps WHERE id = $1)`, "tasks_state_check"},
		{`UPDATE tasker.tasks SET state = 'succeeded' WHERE id = (SELECT task_id FROM tasker.steps WHERE id = $1)`, "tasks_lifecycle_check"},
		{`UPDATE tasker.tasks SET state = 'running' WHERE id = (SELECT task_id FROM tasker.steps WHERE id = $1)`, "tasks_lifecycle_check"},
		{`UPDATE tasker.tasks SET unfinished_steps = 7 WHERE id = (SELECT task_id FROM tasker.steps WHERE id = $1)`, "tasks_lifecycle_check"},
		{`INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
		  SELECT task_id, id, 'succeeded', 'running', 1, 'x' FROM tasker.steps WHERE id = $1`, "step_transitions_check"},
		{`INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
		  SELECT task_id, 'cancelled', 'running', 'x' FROM tasker.steps WHERE id = $1`, "task_transitions_check"},
	} {
		_, err := b.pool.Exec(b.ctx, tc.sql, b.stepID)
		wantViolation(t, err, tc.constraint)
	}
	// A legal change passes.
	if _, err := b.pool.Exec(b.ctx, `UPDATE tasker.steps SET state = 'running', lease = gen_random_uuid(),
		lease_expires_at = now(), started_at = now() WHERE id = $1`, b.stepID); err != nil {
		t.Errorf("legal update: %v", err)
	}
}

func TestHistoryIsAppendOnly(t *testing.T) {
	b := setupSchema(t)
	if _, err := b.pool.Exec(b.ctx, `SELECT tasker.cancel_task($1::bigint, 'x'::text)`, b.taskID); err != nil {
		t.Fatal(err) // leaves a task transition and step transitions
	}
	for _, sql := range []string{
		`UPDATE tasker.step_transitions SET reason = 'edited'`,
		`DELETE FROM tasker.step_transitions`,
		`TRUNCATE tasker.step_transitions`,
		`UPDATE tasker.task_transitions SET reason = 'edited'`,
		`DELETE FROM tasker.task_transitions WHERE task_id = ` + strconv.FormatInt(b.taskID, 10),
	} {
		_, err := b.pool.Exec(b.ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want an append-only error", sql, err)
		}
	}
	// With its task gone, the history can go (that is what upkeep does).
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	for _, sql := range []string{
		`DELETE FROM tasker.tasks WHERE id = $1`,
		`DELETE FROM tasker.step_transitions WHERE task_id = $1`,
		`DELETE FROM tasker.task_transitions WHERE task_id = $1`,
	} {
		if _, err := tx.Exec(b.ctx, sql, b.taskID); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

func TestOpenSetsSessionDefaults(t *testing.T) {
	ctx := testContext(t)
	url := pgtest.NewDatabase(t)
	pool, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var st, idle, app string
	if err := pool.QueryRow(ctx, `SELECT current_setting('statement_timeout'),
		current_setting('idle_in_transaction_session_timeout'), current_setting('application_name')`).
		Scan(&st, &idle, &app); err != nil {
		t.Fatal(err)
	}
	if st != "30s" || idle != "1min" || app != "tasker" {
		t.Errorf("statement_timeout=%s idle_in_transaction_session_timeout=%s application_name=%s", st, idle, app)
	}
	if pool.Config().MaxConns < 4 {
		t.Errorf("MaxConns = %d", pool.Config().MaxConns)
	}

	// Explicit options, and a URL setting wins over the default.
	pool2, err := store.Open(ctx, url+"&statement_timeout=5000", store.Options{IdleInTransactionTimeout: -1,
		ApplicationName: "x", MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer pool2.Close()
	if err := pool2.QueryRow(ctx, `SELECT current_setting('statement_timeout'),
		current_setting('idle_in_transaction_session_timeout'), current_setting('application_name')`).
		Scan(&st, &idle, &app); err != nil {
		t.Fatal(err)
	}
	if st != "5s" || idle != "0" || app != "x" || pool2.Config().MaxConns != 3 {
		t.Errorf("statement_timeout=%s idle_in_transaction_session_timeout=%s application_name=%s", st, idle, app)
	}

	if _, err := store.Open(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=1", store.Options{}); err == nil {
		t.Error("Open of an unreachable server succeeded")
	}
}
