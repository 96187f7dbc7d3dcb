package pgmq_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
)

func schemaComment(t *testing.T, db pgmq.DBTX) *string {
	t.Helper()
	var c *string
	err := db.QueryRow(context.Background(),
		`SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'pgmq'`).Scan(&c)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func functionExists(t *testing.T, db pgmq.DBTX, signature string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow(context.Background(), `SELECT to_regprocedure($1::text) IS NOT NULL`, signature).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestInstallFreshDatabase(t *testing.T) {
	b := setup(t) // asserts ModeCompat: the extension is not available on this server

	c := schemaComment(t, b.pool)
	if c == nil || !strings.HasPrefix(*c, "tasker-operator pgmq-compatible schema v1 sha256:") {
		t.Fatalf("schema comment = %v, want the compat marker", c)
	}
	if !functionExists(t, b.pool, "pgmq.send(text,jsonb)") {
		t.Fatal("pgmq.send(text, jsonb) missing")
	}
}

func TestInstallIdempotent(t *testing.T) {
	b := setupQueue(t)
	b.send(t, "q", 3)
	for i := 0; i < 3; i++ {
		mode, err := pgmq.Install(b.ctx, b.pool)
		if err != nil || mode != pgmq.ModeCompat {
			t.Fatalf("Install #%d = %q, %v; want compat", i+2, mode, err)
		}
	}
	m, err := b.client.Metrics(b.ctx, "q")
	if err != nil || m.QueueLength != 3 {
		t.Fatalf("after re-install: metrics = %+v, %v; want the 3 messages kept", m, err)
	}
}

// A schema of an older (or hand-applied) revision of compat.sql is re-applied, so fixes land.
func TestInstallReappliesOlderCompatRevision(t *testing.T) {
	b := setupQueue(t)
	b.send(t, "q", 2)
	b.exec(t, `DROP FUNCTION pgmq.pop(text, integer)`)
	b.exec(t, `COMMENT ON SCHEMA pgmq IS 'tasker-operator pgmq-compatible schema v0'`)

	mode, err := pgmq.Install(b.ctx, b.pool)
	if err != nil || mode != pgmq.ModeCompat {
		t.Fatalf("Install = %q, %v; want compat", mode, err)
	}
	if !functionExists(t, b.pool, "pgmq.pop(text,integer)") {
		t.Fatal("pgmq.pop was not restored by re-applying compat.sql")
	}
	if c := schemaComment(t, b.pool); c == nil || !strings.Contains(*c, "v1 sha256:") {
		t.Fatalf("schema comment = %v, want the current revision", c)
	}
	if n := b.queryInt(t, `SELECT count(*) FROM pgmq.q_q`); n != 2 {
		t.Fatalf("queue has %d messages after re-apply, want 2", n)
	}
}

// A schema already at this exact revision is not touched again (no DDL at every start-up).
func TestInstallSkipsCurrentRevision(t *testing.T) {
	b := setup(t)
	b.exec(t, `DROP FUNCTION pgmq.metrics_all()`)
	mode, err := pgmq.Install(b.ctx, b.pool)
	if err != nil || mode != pgmq.ModeCompat {
		t.Fatalf("Install = %q, %v; want compat", mode, err)
	}
	if functionExists(t, b.pool, "pgmq.metrics_all()") {
		t.Fatal("compat.sql was re-applied although the installed revision is current")
	}
}

// A pgmq schema that is not the project's (the real extension, or pgmq's SQL file) is used as it is.
func TestInstallExistingForeignSchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	// Simulate pgmq installed from its SQL file: the compatible schema without the project's marker.
	if _, err := pool.Exec(ctx, pgmq.CompatSQL()); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `COMMENT ON SCHEMA pgmq IS NULL`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DROP FUNCTION pgmq.metrics_all()`); err != nil {
		t.Fatal(err)
	}

	mode, err := pgmq.Install(ctx, pool)
	if err != nil || mode != pgmq.ModeExisting {
		t.Fatalf("Install = %q, %v; want existing", mode, err)
	}
	if c := schemaComment(t, pool); c != nil {
		t.Fatalf("Install changed the comment of a foreign pgmq schema to %q", *c)
	}
	if functionExists(t, pool, "pgmq.metrics_all()") {
		t.Fatal("Install modified a foreign pgmq schema")
	}
	// And the client works on it.
	client := pgmq.New(pool)
	if err := client.CreateQueue(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Send(ctx, "q", []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	msgs, err := client.Read(ctx, "q", time.Minute, 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Read = %v, %v", msgs, err)
	}
}

// An empty pgmq schema (created ahead, e.g. by a DBA for its privileges) is installed into.
func TestInstallIntoEmptySchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(ctx, `CREATE SCHEMA pgmq`); err != nil {
		t.Fatal(err)
	}
	mode, err := pgmq.Install(ctx, pool)
	if err != nil || mode != pgmq.ModeCompat {
		t.Fatalf("Install = %q, %v; want compat", mode, err)
	}
	if !functionExists(t, pool, "pgmq.read(text,integer,integer,jsonb)") {
		t.Fatal("pgmq.read missing")
	}
}

// Replicas starting together: 4 installers on separate connections at once all succeed.
func TestInstallConcurrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)

	const n = 4
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		c, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close(context.Background()) }()
		conns[i] = c
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		modes = make([]pgmq.InstallMode, n)
		errs  = make([]error, n)
	)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			modes[i], errs[i] = pgmq.Install(ctx, conns[i])
		}()
	}
	close(start)
	wg.Wait()
	for i := range errs {
		if errs[i] != nil || modes[i] != pgmq.ModeCompat {
			t.Errorf("installer %d: %q, %v; want compat", i, modes[i], errs[i])
		}
	}
	client := pgmq.New(conns[0])
	if err := client.CreateQueue(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Send(ctx, "q", []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
}

// Install inside the caller's transaction: nothing is visible to others before commit, and a rollback undoes it.
func TestInstallInCallerTransaction(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)

	for _, commit := range []bool{false, true} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A failure below must not leave the transaction open: the pool could not close.
		defer func() { _ = tx.Rollback(ctx) }()
		mode, err := pgmq.Install(ctx, tx)
		if err != nil || mode != pgmq.ModeCompat {
			t.Fatalf("Install in tx = %q, %v", mode, err)
		}
		if err := pgmq.New(tx).CreateQueue(ctx, "q"); err != nil {
			t.Fatal(err)
		}
		var visible bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass('pgmq.meta') IS NOT NULL`).Scan(&visible); err != nil {
			t.Fatal(err)
		}
		if visible {
			t.Fatal("uncommitted install is visible to another connection")
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT to_regclass('pgmq.q_q') IS NOT NULL`).Scan(&visible); err != nil {
			t.Fatal(err)
		}
		if visible != commit {
			t.Fatalf("commit=%v: queue table visible=%v", commit, visible)
		}
	}
}

func TestInstallOnConn(t *testing.T) {
	b := setup(t)
	conn, _ := b.connect(t)
	mode, err := pgmq.Install(b.ctx, conn)
	if err != nil || mode != pgmq.ModeCompat {
		t.Fatalf("Install on *pgx.Conn = %q, %v", mode, err)
	}
}
