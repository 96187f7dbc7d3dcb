package store_test

import (
	"context"
	"fmt"
	neturl "net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestMigrationsAreNumberedWithoutGaps(t *testing.T) {
	ms := store.Migrations()
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("migration %d has version %d", i, m.Version)
		}
		if m.Name == "" || m.SQL == "" {
			t.Errorf("migration %d: empty name or SQL", m.Version)
		}
	}
	if store.LatestVersion() != ms[len(ms)-1].Version {
		t.Errorf("LatestVersion = %d", store.LatestVersion())
	}
}

func TestMigrateTwice(t *testing.T) {
	ctx := testContext(t)
	pool := pgtest.NewPool(t)

	v, err := store.Version(ctx, pool)
	if err != nil || v != 0 {
		t.Fatalf("Version before migrating = %d, %v; want 0, nil", v, err)
	}
	for i := 0; i < 2; i++ {
		if err := store.Migrate(ctx, pool); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	v, err = store.Version(ctx, pool)
	if err != nil || v != store.LatestVersion() {
		t.Fatalf("Version = %d, %v; want %d", v, err, store.LatestVersion())
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.schema_migrations`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(store.Migrations()) {
		t.Errorf("schema_migrations has %d rows, want %d", rows, len(store.Migrations()))
	}
}

func TestMigrateConcurrently(t *testing.T) {
	ctx := testContext(t)
	url := pgtest.NewDatabase(t)

	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate pools: like separate processes.
			pool, err := store.Open(ctx, url, store.Options{MaxConns: 2})
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			errs[i] = store.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	pool, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	v, err := store.Version(ctx, pool)
	if err != nil || v != store.LatestVersion() {
		t.Fatalf("Version = %d, %v; want %d", v, err, store.LatestVersion())
	}
	// The lock is free again.
	var free bool
	if err := pool.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::bigint)`, store.MigrateLockKey).Scan(&free); err != nil || !free {
		t.Fatalf("migration lock still held: %v %v", free, err)
	}
}

// Any role that may connect can take an advisory lock: one holding the old migration lock key for ever delays a
// migration by a few seconds, no more, and cannot take the migration's turn, a lock on a table it may not lock
// (issue 13).
func TestMigrateIsNotStalledByAnotherRole(t *testing.T) {
	ctx := testContext(t)
	url := pgtest.NewDatabase(t)
	pool, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}

	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	role := fmt.Sprintf("tasker_stranger_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA tasker TO %[1]s`, role)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), fmt.Sprintf(`DROP OWNED BY %s; DROP ROLE %[1]s`, role))
	})
	u, _ := neturl.Parse(url)
	u.User = neturl.User(role)
	stranger, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stranger.Close(context.Background()) }()
	if _, err := stranger.Exec(ctx, `SELECT pg_advisory_lock($1::bigint)`, store.MigrateLockKey); err != nil {
		t.Fatal(err)
	}
	_, err = stranger.Exec(ctx, `BEGIN; LOCK TABLE tasker.migration_lock IN ACCESS SHARE MODE`)
	if err == nil || !strings.Contains(err.Error(), "permission denied for table migration_lock") {
		t.Errorf("another role locks the migration table: %v", err)
	}
	_, _ = stranger.Exec(ctx, `ROLLBACK`)

	done := make(chan error, 1)
	go func() { done <- store.Migrate(ctx, pool) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Migrate while another role holds the advisory lock: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Migrate stalled behind another role's advisory lock")
	}
}
