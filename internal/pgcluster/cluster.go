// Package pgcluster runs a PostgreSQL server from the machine's binaries (/usr/lib/postgresql/*/bin): as the
// postgres user when the caller is root (the server refuses to run as root), on a loopback port, dying with the
// process that started it (parent-death signal). The test harness (internal/pgtest) and the local stack
// (tasker-dev) use it.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by the package.
const (
	// EnvBinDir overrides where the PostgreSQL binaries are (default: the newest of /usr/lib/postgresql/*/bin
	// that has initdb, preferring 15).
	EnvBinDir = "TASKER_PG_BIN"
)

const dirPrefix = "tasker-pgcluster-"

// Cluster is a PostgreSQL server owned by this process: throwaway (a temporary folder, removed by Stop) or kept
// in a folder of the caller's (Options.DataDir, reused by the next Start).
type Cluster struct {
	// URL is a superuser connection string to the "postgres" database.
	URL string

	binDir  string
	dataDir string
	port    int
	cred    *syscall.Credential

	settings map[string]string
	keep     bool // DataDir given: Stop keeps the files

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
	// DataDir keeps the cluster in this folder across runs: initialised on first use, reused afterwards, and
	// left in place by Stop. Empty means a temporary folder that Stop removes.
	DataDir string
	// Port to listen on (127.0.0.1). Zero picks a free one.
	Port int
}

// Start initialises (when needed) and starts a cluster. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	removeStaleClusters()

	dataDir := opts.DataDir
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", dirPrefix); err != nil {
			return nil, err
		}
	} else if dataDir, err = filepath.Abs(dataDir); err != nil {
		return nil, err
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	c := &Cluster{binDir: binDir, dataDir: dataDir, keep: opts.DataDir != ""}
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
		if err := reachable(filepath.Dir(dataDir)); err != nil {
			c.removeFiles()
			return nil, err
		}
		if err := os.Chown(dataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			c.removeFiles()
			return nil, err
		}
	}
	pgdata := c.pgdata()
	if _, err := os.Stat(filepath.Join(pgdata, "PG_VERSION")); err != nil {
		initdb := c.command(ctx, "initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8",
			"--no-locale", "--no-sync", "--no-instructions")
		if out, err := initdb.CombinedOutput(); err != nil {
			c.removeFiles()
			return nil, fmt.Errorf("initdb: %w: %s", err, out)
		}
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
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
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
	defer func() { _ = logFile.Close() }()
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
			go func() { _ = <-exited }() // reap
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

// Stop shuts the server down (fast shutdown) and removes its files (unless Options.DataDir kept them).
func (c *Cluster) Stop() {
	c.Pause()
	c.removeFiles()
}

// Pause stops the server but keeps its files, so Resume can start it again on the same port: tests of database
// outages use it.
func (c *Cluster) Pause() { c.shutdown(syscall.SIGINT) } // fast shutdown: disconnect clients, checkpoint, exit

// Crash stops the server as a crash would (immediate shutdown: every process quits at once, nothing is
// checkpointed), keeping its files: Resume then runs crash recovery from the WAL. Chaos tests use it.
func (c *Cluster) Crash() { c.shutdown(syscall.SIGQUIT) }

// shutdown sends the postmaster sig (PostgreSQL's shutdown modes are signals) and waits up to 30 s for it to
// exit, then kills it.
func (c *Cluster) shutdown(sig syscall.Signal) {
	c.mu.Lock()
	cmd := c.cmd
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	for deadline := time.Now().Add(30 * time.Second); processAlive(cmd.Process.Pid); {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Resume starts a paused server again on the same port.
func (c *Cluster) Resume(ctx context.Context) error {
	return c.start(ctx, c.settings)
}

// ResumeOnPort starts a paused server again on another port (0: a free one), as a primary that came back at
// another address would; URL and Port follow. Failover tests put a proxy (a Service's stand-in) in front.
func (c *Cluster) ResumeOnPort(ctx context.Context, port int) error {
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return err
		}
	}
	c.port = port
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c.start(ctx, c.settings)
}

func (c *Cluster) removeFiles() {
	if c.dataDir != "" && !c.keep {
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
	return "", errors.New("pgcluster: no PostgreSQL binaries found in /usr/lib/postgresql/*/bin; install postgresql-15 " +
		"or set " + EnvBinDir)
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root needs a postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// reachable checks that the postgres user can traverse every folder above its data folder (it runs as that
// user, not as root), so a folder such as a 0700 temporary directory gives a clear error instead of initdb's.
func reachable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pgcluster: the postgres user cannot reach its data folder: %s is not searchable by "+
				"others (chmod o+x %s, or choose a data folder elsewhere)", d, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
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
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "tasker-pgtest-*"))
	dirs = append(dirs, old...)
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
