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
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Environment variables read by the harness.
const (
	// EnvDatabaseURL names an existing server to use instead of starting a cluster. The role must be allowed to
	// create databases.
	EnvDatabaseURL = "TASKER_TEST_DATABASE_URL"
	// EnvBinDir overrides where the PostgreSQL binaries are (default: the newest of /usr/lib/postgresql/*/bin
	// that has initdb, preferring 15).
	EnvBinDir = "TASKER_PG_BIN"
)

const dirPrefix = "tasker-pgtest-"

// Cluster is a throwaway PostgreSQL server owned by this process.
type Cluster struct {
	// URL is a superuser connection string to the "postgres" database.
	URL string

	binDir  string
	dataDir string
	port    int
	cred    *syscall.Credential

	settings map[string]string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Options tune a cluster. The zero value is what tests want.
type Options struct {
	// Durable keeps fsync and synchronous_commit on. Off by default: tests do not survive power loss anyway, and a
	// durable commit costs ~1 ms here. Benchmarks that report durable figures set it.
	Durable bool
	// Settings are extra server settings (name -> value), passed as -c name=value.
	Settings map[string]string
}

// StartCluster initialises and starts a new cluster in a temporary folder. Stop it with Stop.
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	removeStaleClusters()

	dataDir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{binDir: binDir, dataDir: dataDir}
	if err := os.WriteFile(filepath.Join(dataDir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		c.removeFiles()
		return nil, err
	}
	// initdb and postgres refuse to run as root: run them as the postgres user.
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			c.removeFiles()
			return nil, err
		}
		c.cred = cred
		if err := os.Chown(dataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			c.removeFiles()
			return nil, err
		}
	}
	pgdata := c.pgdata()
	initdb := c.command(ctx, "initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--no-locale", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		c.removeFiles()
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}

	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": "",
		"max_connections":         "300",
		"log_min_messages":        "warning",
		"logging_collector":       "off",
	}
	if !opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	c.settings = settings
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.port = port
		c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		if lastErr = c.start(ctx, settings); lastErr == nil {
			return c, nil
		}
	}
	c.removeFiles()
	return nil, lastErr
}

func (c *Cluster) pgdata() string { return filepath.Join(c.dataDir, "data") }

// Port is the TCP port the server listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.port }

func (c *Cluster) start(ctx context.Context, settings map[string]string) error {
	args := []string{"-D", c.pgdata(), "-p", strconv.Itoa(c.port)}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	// Not bound to ctx: the server outlives the start-up context and is stopped by Stop.
	cmd := c.command(context.Background(), "postgres", args...)
	logFile, err := os.OpenFile(filepath.Join(c.dataDir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		connCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(connCtx, c.URL)
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			c.mu.Lock()
			c.cmd = cmd
			c.mu.Unlock()
			go func() { <-exited }() // reap
			return nil
		}
		select {
		case werr := <-exited:
			log, _ := os.ReadFile(filepath.Join(c.dataDir, "server.log"))
			return fmt.Errorf("postgres exited during start-up (%v): %s", werr, tail(string(log), 2000))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("postgres did not accept connections within 60s: %v", err)
		}
	}
}

// Stop shuts the server down (fast shutdown) and removes its files.
func (c *Cluster) Stop() {
	c.Pause()
	c.removeFiles()
}

// Pause stops the server but keeps its files, so Resume can start it again on the same port: tests of database
// outages use it.
func (c *Cluster) Pause() {
	c.mu.Lock()
	cmd := c.cmd
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown: disconnect clients, checkpoint, exit
	done := make(chan struct{})
	go func() {
		for processAlive(cmd.Process.Pid) {
			time.Sleep(20 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
	}
}

// Resume starts a paused server again on the same port.
func (c *Cluster) Resume(ctx context.Context) error {
	return c.start(ctx, c.settings)
}

func (c *Cluster) removeFiles() {
	if c.dataDir != "" {
		_ = os.RemoveAll(c.dataDir)
	}
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	// The server must not outlive the test binary, even when the binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if c.cred != nil {
		cmd.SysProcAttr.Credential = c.cred
		cmd.Env = append(os.Environ(), "HOME="+c.dataDir)
	}
	cmd.Dir = c.dataDir
	return cmd
}

func findBinDir() (string, error) {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		return dir, nil
	}
	candidates := []string{"/usr/lib/postgresql/15/bin"}
	if more, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(more) > 0 {
		candidates = append(candidates, more...)
	}
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL binaries found in /usr/lib/postgresql/*/bin; install postgresql-15 " +
		"or set " + EnvBinDir + " or " + EnvDatabaseURL)
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs a postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func processAlive(pid int) bool {
	// Signal 0 checks existence; a zombie child still "exists" until reaped, so check its state too.
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat))
	return len(fields) < 3 || fields[2] != "Z"
}

// removeStaleClusters deletes folders of earlier test binaries that were killed before they could clean up.
func removeStaleClusters() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || processAlive(pid) {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			if lines := strings.SplitN(string(pidFile), "\n", 2); len(lines) > 0 {
				if spid, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && processAlive(spid) {
					_ = syscall.Kill(spid, syscall.SIGKILL)
				}
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
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
	if url := os.Getenv(EnvDatabaseURL); url != "" {
		sharedURL = url
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := StartCluster(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	shared, sharedURL = c, c.URL
	defer c.Stop()
	return m.Run()
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
	defer conn.Close(ctx)
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
		defer conn.Close(ctx)
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
	t.Cleanup(pool.Close) // registered after the drop, so it runs first
	return pool
}
