package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
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

// MigrateLockKey is the session-level advisory lock Migrate holds while it works, so that processes migrating at
// the same time (several replicas starting together) take turns; the later ones find everything applied.
// ('tasker' in ASCII, then 0x01 for "migrate".)
const MigrateLockKey int64 = 0x7461736b657201

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
// It works on a dedicated connection holding the advisory lock MigrateLockKey for the whole run, so concurrent
// Migrate calls from any number of processes are safe: they run one after the other and the later ones apply
// nothing. The connection is closed afterwards (it never returns to the pool), which also releases the lock if
// anything went wrong. The session's statement_timeout is lifted for the run (waiting for another migrator, or
// a long migration, is normal); ctx bounds it instead.
//
// Versions recorded in the database but unknown to this binary (a newer release migrated already) are left
// alone: migrations are additive, so an older binary keeps working during a rolling upgrade.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: acquire connection: %w", err)
	}
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))

	if _, err := conn.Exec(ctx, `SET statement_timeout = 0`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1::bigint)`, MigrateLockKey); err != nil {
		return fmt.Errorf("store: migrate: take the migration lock: %w", err)
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
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1::bigint)`, MigrateLockKey); err != nil {
		return fmt.Errorf("store: migrate: release the migration lock: %w", err)
	}
	return nil
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
