// Package pgtest is the PostgreSQL harness of the project's tests.
//
// A test binary starts one throwaway PostgreSQL cluster (from the machine's PostgreSQL binaries, on a free loopback
// port, with fsync off) in TestMain, and every test gets a database of its own in it:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		pool := pgtest.NewPool(t) // a fresh database, dropped when the test ends
//	}
//
// When TASKER_TEST_DATABASE_URL is set, no cluster is started: databases are created on that server instead.
// The cluster is stopped and its files removed when the binary exits, also when tests fail; if the binary is
// killed, the server dies with it (parent-death signal) and the next run removes the stale folder.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/pgcluster"
)

// Environment variables read by the harness.
const (
	// EnvDatabaseURL names an existing server to use instead of starting a cluster. The role must be allowed to
	// create databases.
	EnvDatabaseURL = "TASKER_TEST_DATABASE_URL"
	// EnvBinDir overrides where the PostgreSQL binaries are (see pgcluster.EnvBinDir).
	EnvBinDir = pgcluster.EnvBinDir
)

// Cluster and Options are pgcluster's: a throwaway server (the zero Options are what tests want).
type (
	Cluster = pgcluster.Cluster
	Options = pgcluster.Options
)

// StartCluster starts a throwaway cluster of the caller's own (most tests use the shared one instead).
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	return pgcluster.Start(ctx, opts)
}

// ---- the per-binary shared server ----

var (
	shared    *Cluster
	sharedURL string
	dbCounter atomic.Int64
)

// Main starts the shared cluster (unless TASKER_TEST_DATABASE_URL is set), runs the tests and stops the cluster,
// whatever the tests did. Use it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	return MainWith(m, Options{})
}

// MainWith is Main with cluster options.
func MainWith(m *testing.M, opts Options) int {
	teardown, err := Setup(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	defer teardown()
	return m.Run()
}

// Setup starts the shared cluster (unless TASKER_TEST_DATABASE_URL is set) for TestMains that also start other
// things; call teardown when the tests are done.
func Setup(opts Options) (teardown func(), err error) {
	if url := os.Getenv(EnvDatabaseURL); url != "" {
		sharedURL = url
		return func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, opts)
	if err != nil {
		return nil, err
	}
	shared, sharedURL = c, c.URL
	return c.Stop, nil
}

// CreateDatabase creates a database named after prefix on the shared server and returns its URL, for state that
// lives as long as the test binary (an operator's database in TestMain). The server's teardown removes it.
func CreateDatabase(prefix string) (string, error) {
	if sharedURL == "" {
		return "", errors.New("pgtest: no server; call pgtest.Setup first")
	}
	name := fmt.Sprintf("%s_%d_%d", strings.Trim(nonName.ReplaceAllString(strings.ToLower(prefix), "_"), "_"),
		os.Getpid()%100000, dbCounter.Add(1))
	return CreateDatabaseIn(sharedURL, name)
}

// CreateDatabaseIn creates the database name on the server of adminURL (a superuser URL, e.g. a
// pgcluster.Cluster's) and returns its URL.
func CreateDatabaseIn(adminURL, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", err
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Shared returns the cluster Main started, or nil when an external server is used.
func Shared() *Cluster { return shared }

// AdminURL is the superuser URL of the shared server. Tests should use NewDatabase instead.
func AdminURL(t testing.TB) string {
	t.Helper()
	if sharedURL == "" {
		t.Fatal("pgtest: no server; call pgtest.Main from TestMain")
	}
	return sharedURL
}

var nonName = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates an empty database for this test and returns its connection string. The database is
// dropped (connections terminated) when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	name := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t_%s_%d_%d", name, os.Getpid()%100000, dbCounter.Add(1))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return // the server is gone; nothing left to drop
		}
		defer func() { _ = conn.Close(ctx) }()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", EnvDatabaseURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// NewPool creates a database for this test (see NewDatabase) and a pool connected to it, closed at the end.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dbURL := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(func() { closePool(t, pool, poolCloseWait) }) // registered after the drop, so it runs first
	return pool
}

// poolCloseWait is how long closePool waits for a test's connections to come back.
const poolCloseWait = 10 * time.Second

// closePool closes a test's pool. pgxpool.Pool.Close waits for every checked-out connection, so a test that failed
// with a transaction open (its connection never released) would hang the package until go test's timeout: after
// wait the test fails instead, and the database's forced drop ends the connection.
func closePool(t testing.TB, pool *pgxpool.Pool, wait time.Duration) {
	closed := make(chan struct{})
	go func() {
		pool.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Errorf("pgtest: %d connection(s) of the test's pool still checked out after %s (a transaction or rows left open?)",
			pool.Stat().AcquiredConns(), wait)
	}
}
