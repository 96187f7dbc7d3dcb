package dbroles

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// Roles are global to the PostgreSQL cluster while each test has its own database: role names carry the process
// id and a counter so that tests (and test binaries sharing TASKER_TEST_DATABASE_URL) never collide.
var roleCounter atomic.Int64

func uniqueRole(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid()%100000, roleCounter.Add(1))
}

// install is a database set up the documented way: grants.sql for the operator's role, the migrations run as
// that role (as the migration Job does), grants.sql again for worker roles.
type install struct {
	adminURL    string // superuser, the test's database
	operatorURL string
	operator    *pgxpool.Pool
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// setup creates a database, the operator's role (grants.sql) and migrates it as that role.
func setup(t *testing.T) *install {
	t.Helper()
	in := &install{adminURL: pgtest.NewDatabase(t)}
	operatorRole := uniqueRole("tasker_operator")
	dropRolesAtCleanup(t, in.adminURL, operatorRole)
	psqlScript(t, in.adminURL, map[string]string{"operator_role": operatorRole, "operator_password": "operator-pw"})
	in.operatorURL = withUser(t, in.adminURL, operatorRole, "operator-pw")
	in.operator = openPool(t, in.operatorURL)
	if err := migrate(ctxT(t), in.operator); err != nil {
		t.Fatalf("migrate as the operator's role: %v", err)
	}
	return in
}

// addWorker runs grants.sql for a worker role and returns a pool connected as it (nil for a NOLOGIN role).
func (in *install) addWorker(t *testing.T, queues string, extra map[string]string) (role string, pool *pgxpool.Pool) {
	t.Helper()
	role = uniqueRole("tasker_worker")
	dropRolesAtCleanup(t, in.adminURL, role)
	vars := map[string]string{"worker_role": role, "worker_password": "worker-pw", "worker_queues": queues}
	for k, v := range extra {
		vars[k] = v
	}
	psqlScript(t, in.adminURL, vars)
	if vars["worker_login"] == "off" {
		return role, nil
	}
	return role, openPool(t, withUser(t, in.adminURL, role, "worker-pw"))
}

// dropRolesAtCleanup drops the roles when the test ends, before its database is dropped (t.Cleanup runs last-in
// first-out): their privileges in the database go first (DROP OWNED), then the roles.
func dropRolesAtCleanup(t *testing.T, dbURL string, roles ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return
		}
		defer func() { _ = conn.Close(ctx) }()
		for _, r := range roles {
			ident := pgx.Identifier{r}.Sanitize()
			_, _ = conn.Exec(ctx, "DROP OWNED BY "+ident+" CASCADE")
		}
		for _, r := range roles {
			// The role may still own the database's objects elsewhere only if a test failed half-way; the
			// database is dropped next anyway.
			_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
		}
	})
}

func openPool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := store.Open(ctxT(t), dbURL, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func withUser(t *testing.T, dbURL, user, password string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// psqlScript runs config/database/grants.sql with psql and the given variables.
func psqlScript(t *testing.T, dbURL string, vars map[string]string) string {
	t.Helper()
	out, err := runPsql(dbURL, vars)
	if err != nil {
		t.Fatalf("psql -f config/database/grants.sql %v: %v\n%s", vars, err, out)
	}
	return out
}

func runPsql(dbURL string, vars map[string]string) (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	args := []string{"--no-psqlrc", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbURL}
	for k, v := range vars {
		args = append(args, "-v", k+"="+v)
	}
	args = append(args, "-f", filepath.Join(root, "config", "database", "grants.sql"))
	cmd := exec.Command(psqlBinary(), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// psqlBinary prefers the harness's PostgreSQL binaries (TASKER_PG_BIN), then psql on PATH.
func psqlBinary() string {
	if dir := os.Getenv(pgtest.EnvBinDir); dir != "" {
		return filepath.Join(dir, "psql")
	}
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return "psql"
}

// pgCode returns the SQLSTATE of err ("" when it is not a PostgreSQL error).
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// wantDenied asserts that err is an insufficient_privilege error whose message contains want.
func wantDenied(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want permission denied", what)
		return
	}
	if pgCode(err) != "42501" || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v (SQLSTATE %s), want SQLSTATE 42501 containing %q", what, err, pgCode(err), want)
	}
}

var pgtestNewDatabase = pgtest.NewDatabase

// migrate runs the migrations the way the migration Job does (store.Migrate; migrate_test.go runs the manager
// binary's --migrate-only too).
func migrate(ctx context.Context, pool *pgxpool.Pool) error { return store.Migrate(ctx, pool) }
