package pgmq

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// compatSQL is the project's pgmq-compatible schema. It is re-runnable: an upgrade is a re-run.
//
//go:embed compat.sql
var compatSQL string

// CompatSQL returns the project's pgmq-compatible schema script, for operators who want to apply it themselves
// (psql -1 -f). It contains no transaction control.
func CompatSQL() string { return compatSQL }

// compatCommentPrefix starts the schema comment compat.sql sets; Install recognises its own schema by it.
const compatCommentPrefix = "tasker-operator pgmq-compatible schema"

// compatComment is the comment Install leaves on a schema it installed: compat.sql's own comment plus a digest
// of the script, so that a later Install can tell whether the schema is already this exact revision.
var compatComment = func() string {
	sum := sha256.Sum256([]byte(compatSQL))
	return compatCommentPrefix + " " + compatVersion + " sha256:" + hex.EncodeToString(sum[:8])
}()

// compatVersion is the revision compat.sql writes into its own schema comment (a test keeps the two in step).
const compatVersion = "v1"

// installLockSQL takes the advisory lock that serialises installers (hashtextextended of a fixed string, computed by
// the server so every process derives the same key).
const installLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended('tasker-operator.pgmq.install'::text, 0::bigint))`

// InstallMode says where the pgmq objects Install left in place come from.
type InstallMode string

const (
	// ModeExtension: Install created the real pgmq extension (CREATE EXTENSION pgmq).
	ModeExtension InstallMode = "extension"
	// ModeExisting: a pgmq schema that is not the project's (the extension, or pgmq's SQL file) was already there
	// and was left untouched.
	ModeExisting InstallMode = "existing"
	// ModeCompat: the project's pgmq-compatible schema is installed (freshly, or re-applied over an older
	// revision of itself).
	ModeCompat InstallMode = "compat"
)

// Beginner is what Install needs: a DBTX that can open a transaction. *pgxpool.Pool, *pgxpool.Conn and
// *pgx.Conn begin a transaction; a pgx.Tx begins a savepoint inside the caller's transaction.
type Beginner interface {
	DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Install makes the pgmq functions available in the database db is connected to, and reports how:
//
//  1. A pgmq schema holding pgmq.meta already exists: it is used as it is (ModeExisting) — unless it is the
//     project's own compatible schema (recognised by its comment), which is re-applied when its revision differs
//     from this binary's, so fixes land (ModeCompat).
//  2. Otherwise CREATE EXTENSION IF NOT EXISTS pgmq is tried in a savepoint (ModeExtension).
//  3. If the extension is not available on the server (no control file, a missing dependency, or no privilege
//     to create it), the project's compatible schema is installed (ModeCompat).
//
// Everything happens in one transaction (a savepoint when db is a pgx.Tx) under a transaction-scoped advisory
// lock, so concurrent installers (several replicas starting at once) serialise and all succeed. When db is a
// pgx.Tx, nothing is visible to others until the caller commits.
func Install(ctx context.Context, db Beginner) (InstallMode, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("pgmq: install: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // no-op after Commit

	mode, err := install(ctx, tx)
	if err != nil {
		return "", fmt.Errorf("pgmq: install: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("pgmq: install: commit: %w", err)
	}
	return mode, nil
}

func install(ctx context.Context, tx pgx.Tx) (InstallMode, error) {
	if _, err := tx.Exec(ctx, installLockSQL); err != nil {
		return "", fmt.Errorf("advisory lock: %w", err)
	}

	var (
		schemaExists bool
		hasMeta      bool
		comment      *string
	)
	err := tx.QueryRow(ctx, `
		SELECT n.oid IS NOT NULL,
		       to_regclass('pgmq.meta'::text) IS NOT NULL,
		       obj_description(n.oid, 'pg_namespace'::name)
		FROM (SELECT 1) AS one
		LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = 'pgmq'::name`).Scan(&schemaExists, &hasMeta, &comment)
	if err != nil {
		return "", fmt.Errorf("inspect schema pgmq: %w", err)
	}

	if schemaExists && hasMeta {
		if comment == nil || !strings.HasPrefix(*comment, compatCommentPrefix) {
			return ModeExisting, nil
		}
		if *comment == compatComment {
			return ModeCompat, nil // this exact revision is installed
		}
		return ModeCompat, applyCompat(ctx, tx)
	}
	// No schema, or an empty/unfinished one (e.g. created ahead by a DBA for its privileges): install into it.

	sp, err := tx.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("savepoint: %w", err)
	}
	_, extErr := sp.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pgmq`)
	if extErr == nil {
		if err := sp.Commit(ctx); err != nil {
			return "", fmt.Errorf("release savepoint: %w", err)
		}
		return ModeExtension, nil
	}
	if err := sp.Rollback(ctx); err != nil {
		return "", fmt.Errorf("rollback to savepoint: %w (after CREATE EXTENSION pgmq: %v)", err, extErr)
	}
	if !extensionUnavailable(extErr) {
		return "", fmt.Errorf("create extension pgmq: %w", extErr)
	}
	return ModeCompat, applyCompat(ctx, tx)
}

// extensionUnavailable reports whether CREATE EXTENSION failed because pgmq cannot be had on this server, as
// opposed to a genuine failure worth surfacing.
func extensionUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "0A000", // feature_not_supported: `extension "pgmq" is not available` (PostgreSQL 16+)
		"58P01", // undefined_file: `could not open extension control file ...` (PostgreSQL <= 15)
		"42704", // undefined_object: a required extension (e.g. pg_partman for old pgmq) is missing
		"42501": // insufficient_privilege: not allowed to create this (untrusted) extension
		return true
	}
	return false
}

func applyCompat(ctx context.Context, tx pgx.Tx) error {
	// No arguments: pgx sends the script with the simple protocol, which accepts several statements.
	if _, err := tx.Exec(ctx, compatSQL); err != nil {
		return fmt.Errorf("apply compatible schema: %w", err)
	}
	if _, err := tx.Exec(ctx, `COMMENT ON SCHEMA pgmq IS `+quoteLiteral(compatComment)); err != nil {
		return fmt.Errorf("mark compatible schema: %w", err)
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (COMMENT takes no parameters). compatComment holds no quote,
// but quote anyway.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
