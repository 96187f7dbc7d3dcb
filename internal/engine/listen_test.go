package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestListen(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithCancel(b.ctx)
	tasks := make(chan int64, 100)
	queues := make(chan string, 100)
	connects := make(chan struct{}, 10)
	stopped := make(chan error, 1)
	go func() {
		stopped <- b.engine.Listen(ctx, engine.Notifications{
			OnTask:    func(id int64) { tasks <- id },
			OnQueue:   func(q string) { queues <- q },
			OnConnect: func() { connects <- struct{}{} },
		})
	}()
	wait := func(what string) {
		t.Helper()
		select {
		case <-connects:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
		}
	}
	wait("connection")

	id := b.admit(t, engine.TaskSpec{Queue: "ln", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	expectTask := func() {
		t.Helper()
		select {
		case got := <-tasks:
			if got != id {
				t.Fatalf("task notification %d, want %d", got, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no task notification")
		}
	}
	expectTask()
	select {
	case q := <-queues:
		if q != "ln" {
			t.Fatalf("queue notification %q", q)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no queue notification")
	}

	// The listener's connection dies: Listen reconnects and calls OnConnect again.
	if _, err := b.pool.Exec(b.ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`); err != nil {
		t.Fatal(err)
	}
	wait("reconnection")
	if err := b.engine.Cancel(b.ctx, id, "bye"); err != nil {
		t.Fatal(err)
	}
	expectTask()

	cancel()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Listen returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not return after cancel")
	}
}
