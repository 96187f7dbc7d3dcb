// Package workers holds process-level tests of tasker's workers: reference-worker processes killed and drained
// under load, and a worker written in another language speaking the SQL protocol.
package workers

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// workerBin is the reference worker, built once per test binary.
var workerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tasker-workers-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	build := exec.Command("go", "build", "-o", workerBin, "github.com/tasker-operator/tasker-operator/cmd/worker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cmd/worker:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type testBundle struct {
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
	eng  *engine.Engine
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	url := pgtest.NewDatabase(t)
	pool, err := store.Open(ctx, url, store.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return &testBundle{ctx: ctx, url: url, pool: pool, eng: engine.New(pool, engine.Options{})}
}

// proc is a worker process whose output is kept for the test's log.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc starts name with args; it dies with the test binary (parent-death signal) and is killed at the
// end of the test if still running. Its output is logged when the test fails.
func startProc(t *testing.T, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, tail(p.out.String(), 30000))
		}
	})
	return p
}

// startWorker starts a reference worker on the test's database.
func (tb *testBundle) startWorker(t *testing.T, id string, args ...string) *proc {
	t.Helper()
	base := []string{"--database-url", tb.url, "--id", id, "--metrics-bind-address", "0", "--log-format", "text"}
	return startProc(t, id, nil, workerBin, append(base, args...)...)
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
}

// wait waits for the process to exit, at most d.
func (p *proc) wait(d time.Duration) (exited bool) {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// stepStates counts the steps of the database by state.
func (tb *testBundle) stepStates(t *testing.T) map[string]int {
	return tb.countByState(t, `SELECT state, count(*) FROM tasker.steps GROUP BY state`)
}

// taskStates counts the tasks of the database by state.
func (tb *testBundle) taskStates(t *testing.T) map[string]int {
	return tb.countByState(t, `SELECT state, count(*) FROM tasker.tasks GROUP BY state`)
}

// countByState runs a (state, count) query.
func (tb *testBundle) countByState(t *testing.T, query string) map[string]int {
	t.Helper()
	rows, err := tb.pool.Query(tb.ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
