package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed functions/*.sql
var functionFS embed.FS

// Migration is one embedded schema change, migrations/NNNN_name.sql. Migrations are forward-only: a released
// migration is never edited; a change is a new file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// MigrateLockKey is the session-level advisory lock that releases before this one held while migrating. Any
// role that may connect can take an advisory lock, so it no longer guards anything (see Migrate): Migrate still
// takes it when it can, for older binaries migrating during a rolling upgrade, but waits at most
// migrateAdvisoryWait for it. ('tasker' in ASCII, then 0x01 for "migrate".)
const MigrateLockKey int64 = 0x7461736b657201

// migrateAdvisoryWait bounds Migrate's wait for MigrateLockKey.
const migrateAdvisoryWait = 5 * time.Second

// lockTableSQL creates what the migration lock locks: an empty table of tasker's owner, which no other role (but
// superusers) may lock. Concurrent first runs may collide on the catalogs' unique indexes: Migrate retries.
const lockTableSQL = `
CREATE SCHEMA IF NOT EXISTS tasker;
CREATE TABLE IF NOT EXISTS tasker.migration_lock ();
COMMENT ON TABLE tasker.migration_lock IS 'locked by the migrating process (store.Migrate); never has rows'`

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

var loadMigrations = sync.OnceValues(func() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("store: migration file %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(migrationFS, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(body)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("store: migrations must be numbered 1, 2, 3, ... without gaps; found %04d at position %d",
				m.Version, i+1)
		}
	}
	return out, nil
})

// Migrations returns the embedded migrations in version order.
func Migrations() []Migration {
	ms, err := loadMigrations()
	if err != nil {
		panic(err) // the embedded files are fixed at build time; a test covers them
	}
	return slices.Clone(ms)
}

// LatestVersion is the version of the newest embedded migration: the schema version this binary expects.
func LatestVersion() int {
	ms := Migrations()
	return ms[len(ms)-1].Version
}

const bootstrapSQL = `
CREATE SCHEMA IF NOT EXISTS tasker;
CREATE TABLE IF NOT EXISTS tasker.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tasker.schema_functions (
    file       text PRIMARY KEY,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);`

// Migrate brings the database up to date: pgmq first (the real extension where there is one, else the project's
// compatible schema; see pgmq.Install), then every embedded migration not yet recorded in
// tasker.schema_migrations, each in its own transaction together with its record, then the function files whose
// content differs from what tasker.schema_functions recorded (see ApplyFunctions).
//
// Concurrent Migrate calls from any number of processes are safe: they run one after the other and the later
// ones apply nothing. The turn is a lock on table tasker.migration_lock, held in an open transaction on a second
// connection for the whole run: unlike an advisory lock, which any role that may connect can take (and so stall
// every operator start), only tasker's owner and superusers may lock that table. Both connections are closed
// afterwards (they never return to the pool), which also releases the lock if anything went wrong. Their
// statement and idle-in-transaction timeouts are lifted for the run (waiting for another migrator, or a long
// migration, is normal); ctx bounds it instead.
//
// Versions recorded in the database but unknown to this binary (a newer release migrated already) are left
// alone: migrations are additive, so an older binary keeps working during a rolling upgrade.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	lock, err := dedicatedConn(ctx, pool)
	if err != nil {
		return err
	}
	defer func() { _ = lock.Close(context.WithoutCancel(ctx)) }()
	if err := takeMigrationLock(ctx, lock); err != nil {
		return fmt.Errorf("store: migrate: take the migration lock: %w", err)
	}
	conn, err := dedicatedConn(ctx, pool)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	advisory, err := tryAdvisoryLock(ctx, conn)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := pgmq.Install(ctx, conn); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := conn.Exec(ctx, bootstrapSQL); err != nil {
		return fmt.Errorf("store: migrate: create tasker.schema_migrations: %w", err)
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if err := apply(ctx, conn, m); err != nil {
			return fmt.Errorf("store: migrate: %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	if err := applyFunctions(ctx, conn); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if advisory {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1::bigint)`, MigrateLockKey); err != nil {
			return fmt.Errorf("store: migrate: release the advisory lock: %w", err)
		}
	}
	return nil
}

// dedicatedConn takes a connection out of the pool for good (Migrate closes it), without the session's statement
// and idle-in-transaction timeouts.
func dedicatedConn(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: acquire connection: %w", err)
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, `SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0`); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	return conn, nil
}

// takeMigrationLock creates tasker.migration_lock if need be, then locks it in a transaction left open on conn:
// the migration lock, held until conn is closed.
func takeMigrationLock(ctx context.Context, conn *pgx.Conn) error {
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, lockTableSQL)
		if err == nil {
			break
		}
		// Two first runs creating the schema or table at once: one of them fails on a catalog's unique index.
		if code := pgErrorCode(err); attempt < 5 && (code == "23505" || code == "42P06" || code == "42P07") {
			continue
		}
		return err
	}
	if _, err := conn.Exec(ctx, `BEGIN`); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, `LOCK TABLE tasker.migration_lock IN ACCESS EXCLUSIVE MODE`)
	return err
}

// pgErrorCode is err's SQLSTATE, or "" when it is not a PostgreSQL error.
func pgErrorCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// tryAdvisoryLock takes MigrateLockKey on conn if it becomes free within migrateAdvisoryWait (older binaries take
// turns by it) and says whether it did. Whoever holds it longer is not a migrator that matters: the table lock
// already keeps this release's migrators apart.
func tryAdvisoryLock(ctx context.Context, conn *pgx.Conn) (bool, error) {
	deadline := time.Now().Add(migrateAdvisoryWait)
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::bigint)`, MigrateLockKey).Scan(&got); err != nil {
			return false, err
		}
		if got || time.Now().After(deadline) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func apply(ctx context.Context, conn *pgx.Conn, m Migration) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: pgx uses the simple protocol, which runs a multi-statement script.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO tasker.schema_migrations (version, name) VALUES ($1::integer, $2::text)`,
			m.Version, m.Name)
		return err
	})
}

func appliedVersions(ctx context.Context, db DBTX) (map[int]bool, error) {
	rows, err := db.Query(ctx, `SELECT version FROM tasker.schema_migrations`)
	if err != nil {
		return nil, err
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	out := make(map[int]bool, len(versions))
	for _, v := range versions {
		out[int(v)] = true
	}
	return out, nil
}

// Version returns the highest migration version applied to the database (0 when tasker's schema is not there).
func Version(ctx context.Context, db DBTX) (int, error) {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('tasker.schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int32
	if err := db.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM tasker.schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return int(v), nil
}
