// Package failover checks what workers and the engine see when the PostgreSQL primary goes away and comes back at
// another address behind the same name — what a Kubernetes Service does for CloudNativePG's `-rw` endpoint, or a
// DNS entry for a managed database, during a failover. A TCP proxy in the test stands for the Service: clients
// connect to it, it forwards to the current primary, and moving it to the new primary drops the connections to
// the old one (as the old primary's shutdown does). docs/scaling.md reports what it measures.
package failover

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgcluster"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

// proxy forwards TCP connections to a backend address it can be moved from.
type proxy struct {
	ln      net.Listener
	backend atomic.Value // string
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

func startProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.backend.Store(backend)
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.dropAll() })
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	b, err := net.DialTimeout("tcp", p.backend.Load().(string), 2*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[b] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = b.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, b)
	p.mu.Unlock()
}

// moveTo sends new connections to backend and drops the current ones.
func (p *proxy) moveTo(backend string) {
	p.backend.Store(backend)
	p.dropAll()
}

func (p *proxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *proxy) url() string {
	return "postgres://postgres@" + p.ln.Addr().String() + "/postgres?sslmode=disable"
}

// Tasks keep running across a primary that stops and comes back at another address behind the same name: the
// workers and the engine (the operator's) reconnect through the pool, without restarting, and every step runs to
// completion — those that were running when the primary went are run again (their leases expire) or reported
// once it is back. The time from the new primary accepting connections to the first step completed after it is
// logged (docs/scaling.md).
func TestPrimaryMovesBehindTheSameAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	px := startProxy(t, net.JoinHostPort("127.0.0.1", itoa(pg.Port())))

	pool, err := pgxpool.New(ctx, px.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(pool, engine.Options{})

	var completedAt, completed atomic.Int64 // unix nanos of the latest completion; how many
	wpool, err := pgxpool.New(ctx, px.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wpool.Close)
	w, err := worker.New(wpool, worker.Config{Queues: []string{"failover"}, Slots: 8, VisibilityTimeout: 5 * time.Second,
		HeartbeatInterval: time.Second, PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.Handle("work", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		completedAt.Store(time.Now().UnixNano())
		completed.Add(1)
		return json.RawMessage(`"done"`), nil
	})
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	var exited atomic.Bool
	go func() { err := w.Run(wctx); exited.Store(true); workerDone <- err }()
	t.Cleanup(func() {
		stopWorker()
		if err := <-workerDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("the worker: %v", err)
		}
	})

	// 40 tasks of a 5-step chain: 2.5 s of work at 8 slots; the primary moves after a fifth of it.
	var ids []int64
	for i := range 40 {
		steps := make([]engine.StepSpec, 5)
		for j := range steps {
			steps[j] = engine.StepSpec{Name: "s" + itoa(j), Handler: "work"}
			if j > 0 {
				steps[j].DependsOn = []string{"s" + itoa(j-1)}
			}
		}
		a, err := eng.Admit(ctx, engine.TaskSpec{ExternalKey: "failover-" + itoa(i), Queue: "failover", Steps: steps})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.TaskID)
	}
	waitUntil(t, ctx, "some steps done", func() bool { return completed.Load() >= 40 })
	var unfinished int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.steps WHERE task_id = ANY ($1) AND state <> 'succeeded'`, ids).
		Scan(&unfinished); err != nil {
		t.Fatal(err)
	}
	if unfinished < 100 {
		t.Fatalf("only %d steps left before the failover: the test would not show much", unfinished)
	}

	// The failover: the primary stops (fast shutdown: its clients are disconnected), and comes back at another
	// port, where the proxy (the Service) now points.
	down := time.Now()
	pg.Pause()
	if err := pg.ResumeOnPort(ctx, 0); err != nil {
		t.Fatal(err)
	}
	px.moveTo(net.JoinHostPort("127.0.0.1", itoa(pg.Port())))
	up := time.Now()
	t.Logf("%d of 200 steps left; primary down %.1f s, back at port %d", unfinished, up.Sub(down).Seconds(), pg.Port())

	waitUntil(t, ctx, "a step completed after the failover", func() bool { return completedAt.Load() > up.UnixNano() })
	t.Logf("first completion %.2f s after the new primary accepted connections",
		time.Duration(completedAt.Load()-up.UnixNano()).Seconds())

	waitUntil(t, ctx, "every task to succeed", func() bool {
		for _, id := range ids {
			st, err := eng.GetTask(ctx, id)
			if err != nil || st.Phase != engine.TaskSucceeded {
				return false
			}
		}
		return true
	})
	// Nothing was lost or left: no step failed, no message is left in the queue.
	var failed, left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tasker.steps WHERE task_id = ANY ($1) AND state <> 'succeeded'`, ids).
		Scan(&failed); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgmq.q_failover`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if failed != 0 || left != 0 {
		t.Errorf("%d steps not succeeded, %d messages left", failed, left)
	}
	if exited.Load() {
		t.Error("the worker stopped during the failover: it should have reconnected")
	}
}

func waitUntil(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
