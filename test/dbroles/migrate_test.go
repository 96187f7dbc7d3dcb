package dbroles

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// schemaSnapshot describes everything the migrations own — relations, functions (their definitions and ACLs),
// schemas, the recorded migrations with their timestamps — so that two snapshots differ when a run changed
// anything.
func schemaSnapshot(t *testing.T, db *pgxpool.Pool) (digest string, versions []int32) {
	t.Helper()
	ctx := ctxT(t)
	err := db.QueryRow(ctx, `
		SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (
			SELECT format('relation %s %s %s', c.oid::regclass, c.relkind, c.relacl)
			FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
			WHERE n.nspname IN ('tasker', 'tasker_internal', 'pgmq')
			UNION ALL
			SELECT format('function %s %s %s', p.oid::regprocedure, md5(pg_get_functiondef(p.oid)), p.proacl)
			FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
			WHERE n.nspname IN ('tasker', 'tasker_internal', 'pgmq') AND p.prokind IN ('f', 'p')
			UNION ALL
			SELECT format('schema %s %s %s', n.nspname, n.nspacl, obj_description(n.oid, 'pg_namespace'))
			FROM pg_namespace AS n WHERE n.nspname IN ('tasker', 'tasker_internal', 'pgmq')
			UNION ALL
			SELECT format('migration %s %s %s', m.version, m.name, m.applied_at) FROM tasker.schema_migrations AS m
		) AS s (x)`).Scan(&digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT array_agg(version ORDER BY version) FROM tasker.schema_migrations`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	return digest, versions
}

func wantAllMigrations(t *testing.T, versions []int32) {
	t.Helper()
	if len(versions) != store.LatestVersion() || int(versions[len(versions)-1]) != store.LatestVersion() {
		t.Errorf("applied migrations %v, want 1..%d", versions, store.LatestVersion())
	}
}

// TestMigrationsRunTwice: the operator's role (from grants.sql, not a superuser) migrates an empty database; a
// second run — what every later install, upgrade or manager start does — changes nothing.
func TestMigrationsRunTwice(t *testing.T) {
	in := setup(t) // the first run, as the operator's role
	first, versions := schemaSnapshot(t, in.operator)
	wantAllMigrations(t, versions)
	if err := migrate(ctxT(t), in.operator); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if second, _ := schemaSnapshot(t, in.operator); second != first {
		t.Error("the second migration run changed the schema")
	}
	var owner string
	if err := in.operator.QueryRow(ctxT(t), `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'tasker'`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner != pgUser(t, in.operatorURL) {
		t.Errorf("schema tasker is owned by %s, want the operator's role", owner)
	}
}

func pgUser(t *testing.T, dbURL string) string {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.ConnConfig.User
}

// TestMigrationJobCommand runs what the Helm hook Job and config/migration run — `manager --migrate-only` with
// TASKER_DATABASE_URL — twice against an empty database: both exit 0, the second changes nothing. A database it
// cannot migrate makes it exit non-zero, which fails the Job and with it the release.
func TestMigrationJobCommand(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build manager: %v\n%s", err, out)
	}
	in := &install{adminURL: pgtestNewDatabase(t)}
	op := uniqueRole("tasker_operator")
	dropRolesAtCleanup(t, in.adminURL, op)
	psqlScript(t, in.adminURL, map[string]string{"operator_role": op, "operator_password": "pw"})
	in.operatorURL = withUser(t, in.adminURL, op, "pw")

	run := func(dbURL string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--migrate-only")
		cmd.Env = append(cmd.Environ(), "TASKER_DATABASE_URL="+dbURL)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(in.operatorURL); err != nil {
		t.Fatalf("first --migrate-only: %v\n%s", err, out)
	}
	in.operator = openPool(t, in.operatorURL)
	first, versions := schemaSnapshot(t, in.operator)
	wantAllMigrations(t, versions)
	if out, err := run(in.operatorURL); err != nil {
		t.Fatalf("second --migrate-only: %v\n%s", err, out)
	}
	if second, _ := schemaSnapshot(t, in.operator); second != first {
		t.Error("the second --migrate-only run changed the schema")
	}

	missing := strings.Replace(in.operatorURL, pgUser(t, in.operatorURL)+":", "no_such_role_x:", 1)
	if out, err := run(missing); err == nil {
		t.Errorf("--migrate-only against a database it cannot reach exited 0:\n%s", out)
	}
}
