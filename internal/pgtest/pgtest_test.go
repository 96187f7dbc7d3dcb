package pgtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestNewPoolCreatesIsolatedDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := pgtest.NewPool(t), pgtest.NewPool(t)

	if _, err := a.Exec(ctx, `CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := a.Exec(ctx, `INSERT INTO widgets VALUES (1, 'sprocket')`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var name string
	if err := a.QueryRow(ctx, `SELECT name FROM widgets WHERE id = 1`).Scan(&name); err != nil || name != "sprocket" {
		t.Fatalf("select: %q, %v", name, err)
	}
	// The other test database does not see the table.
	var exists bool
	if err := b.QueryRow(ctx, `SELECT to_regclass('widgets') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("database b sees table of database a: exists=%v err=%v", exists, err)
	}
	var version int
	if err := a.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 150000 {
		t.Fatalf("server version %d, want PostgreSQL 15 or newer", version)
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var dbName string
	t.Run("inner", func(t *testing.T) {
		pool := pgtest.NewPool(t)
		if err := pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&dbName); err != nil {
			t.Fatal(err)
		}
	})
	admin := pgtest.NewPool(t)
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_database WHERE datname = $1`, dbName).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", dbName)
	}
}
