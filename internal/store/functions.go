package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// FunctionFile is one embedded file of SQL functions, functions/NAME.sql: the one place where the current text of
// each function it defines lives (with CREATE OR REPLACE).
type FunctionFile struct {
	Name string // e.g. "claim.sql"
	SQL  string
	// SHA256 is the hex digest of SQL; tasker.schema_functions records it once the file is applied.
	SHA256 string
}

var loadFunctions = sync.OnceValues(func() ([]FunctionFile, error) {
	entries, err := fs.ReadDir(functionFS, "functions")
	if err != nil {
		return nil, err
	}
	var out []FunctionFile
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		body, err := fs.ReadFile(functionFS, path.Join("functions", e.Name()))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		out = append(out, FunctionFile{Name: e.Name(), SQL: string(body), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(out, func(a, b FunctionFile) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
})

// Functions returns the embedded function files in the order they are applied (by name).
func Functions() []FunctionFile {
	fns, err := loadFunctions()
	if err != nil {
		panic(err) // the embedded files are fixed at build time; a test covers them
	}
	return slices.Clone(fns)
}

// applyFunctions applies, in one transaction, every function file whose digest differs from the one recorded in
// tasker.schema_functions (all of them on a new database), and records the new digests. Bodies are not checked
// at creation (check_function_bodies = off), so files may refer to each other in any order; every function is
// compiled when first called. EXECUTE is revoked from PUBLIC again afterwards (worker roles keep what
// grant_worker gave them: CREATE OR REPLACE keeps a function's privileges).
//
// The caller holds the migration lock.
func applyFunctions(ctx context.Context, conn *pgx.Conn) error {
	fns, err := loadFunctions()
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT file, sha256 FROM tasker.schema_functions`)
	if err != nil {
		return fmt.Errorf("read tasker.schema_functions: %w", err)
	}
	recorded := map[string]string{}
	var file, sum string
	if _, err := pgx.ForEachRow(rows, []any{&file, &sum}, func() error { recorded[file] = sum; return nil }); err != nil {
		return fmt.Errorf("read tasker.schema_functions: %w", err)
	}
	var changed []FunctionFile
	for _, f := range fns {
		if recorded[f.Name] != f.SHA256 {
			changed = append(changed, f)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL check_function_bodies = off`); err != nil {
			return err
		}
		for _, f := range changed {
			// No arguments: the simple protocol runs the whole file.
			if _, err := tx.Exec(ctx, f.SQL); err != nil {
				return fmt.Errorf("functions/%s: %w", f.Name, err)
			}
			if _, err := tx.Exec(ctx, `
				INSERT INTO tasker.schema_functions AS s (file, sha256) VALUES ($1::text, $2::text)
				ON CONFLICT (file) DO UPDATE SET sha256 = excluded.sha256, applied_at = now()`,
				f.Name, f.SHA256); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, revokePublicSQL); err != nil {
			return err
		}
		// Worker roles granted before a worker function was added may call it now (functions/roles.sql).
		_, err := tx.Exec(ctx, `SELECT tasker._regrant_workers()`)
		return err
	})
}

// revokePublicSQL keeps every function of tasker's schemas closed to PUBLIC (migration 0004).
const revokePublicSQL = `REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tasker, tasker_internal FROM PUBLIC`

// SchemaSQL returns tasker's whole schema as one script for a database administrator who applies it by hand
// (psql -v ON_ERROR_STOP=1 -1 -f) to a database that has pgmq and no tasker schema yet: the bookkeeping tables,
// every migration, every function file, and the records that make a later Migrate find all of it applied. The
// operator can then run with --skip-migrations.
func SchemaSQL() string {
	var b strings.Builder
	b.WriteString("-- tasker-operator schema version " + strconv.Itoa(LatestVersion()) + ", as Migrate applies it.\n")
	b.WriteString("-- Needs pgmq first: CREATE EXTENSION pgmq, or pgmq's SQL file. Apply in one transaction (psql -1).\n")
	b.WriteString(lockTableSQL[1:] + ";\n")
	b.WriteString(bootstrapSQL[1:] + "\n")
	for _, m := range Migrations() {
		fmt.Fprintf(&b, "\n-- migrations/%04d_%s.sql\n%s", m.Version, m.Name, m.SQL)
		fmt.Fprintf(&b, "INSERT INTO tasker.schema_migrations (version, name) VALUES (%d, '%s');\n", m.Version, m.Name)
	}
	b.WriteString("\nSET check_function_bodies = off;\n")
	for _, f := range Functions() {
		fmt.Fprintf(&b, "\n-- functions/%s\n%s", f.Name, f.SQL)
		fmt.Fprintf(&b, "INSERT INTO tasker.schema_functions (file, sha256) VALUES ('%s', '%s');\n", f.Name, f.SHA256)
	}
	b.WriteString("\nRESET check_function_bodies;\n" + revokePublicSQL + ";\n")
	return b.String()
}
