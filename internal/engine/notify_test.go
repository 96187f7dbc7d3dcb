package engine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// Notifications are for wake-ups: tasker_queue only when a queue without visible work gets some; tasker_task only
// for admissions, failures and operator actions, never from a claim or a completion (the operator follows those
// with TaskChanges, checked at the end). Each action is followed by a NOTIFY on a marker channel from another transaction;
// PostgreSQL delivers notifications in commit order, so what arrives before the marker is exactly what the action
// sent (no waiting for notifications that should not come).
func TestNotificationsOnlyForWakeUpsAndTaskChanges(t *testing.T) {
	b := setup(t)
	conn, err := pgx.ConnectConfig(b.ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(b.ctx)) }()
	if _, err := conn.Exec(b.ctx, `LISTEN tasker_task; LISTEN tasker_queue; LISTEN marker`); err != nil {
		t.Fatal(err)
	}
	marks := 0
	sent := func(what string, action func()) []string {
		t.Helper()
		action()
		marks++
		mark := fmt.Sprint(marks)
		if _, err := b.pool.Exec(b.ctx, `SELECT pg_notify('marker', $1::text)`, mark); err != nil {
			t.Fatal(err)
		}
		var got []string
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second) // a bound, not a measurement
		defer cancel()
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if n.Channel == "marker" && n.Payload == mark {
				slices.Sort(got)
				return got
			}
			got = append(got, n.Channel+":"+n.Payload)
		}
	}
	want := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s notified %v, want %v", what, got, want)
		}
	}
	spec := engine.TaskSpec{Queue: "wq", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}, {Name: "b", Handler: "h"}}}
	var a, c int64
	want("admitting into an empty queue", sent("admit", func() { a = b.admit(t, spec) }),
		fmt.Sprintf("tasker_task:%d", a), "tasker_queue:wq")
	want("admitting into a queue with visible work", sent("admit", func() { c = b.admit(t, spec) }),
		fmt.Sprintf("tasker_task:%d", c))

	var claimed []engine.ClaimedStep
	claim := func(n int) func() {
		return func() {
			steps, err := b.engine.Claim(b.ctx, "wq", n, time.Minute, "w")
			if err != nil || len(steps) != n {
				t.Fatalf("claimed %d (%v), want %d", len(steps), err, n)
			}
			claimed = append(claimed, steps...)
		}
	}
	cursor, err := b.engine.LatestTaskChange(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want("the claim that starts a task", sent("claim", claim(1)))
	want("a claim in a running task", sent("claim", claim(1)))
	complete := func(i int) func() {
		return func() {
			if err := b.engine.Complete(b.ctx, claimed[i].Lease, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	want("a completion that leaves the task running", sent("complete", complete(0)))
	want("the completion that finishes the task", sent("complete", complete(1)))
	want("claiming the rest", sent("claim", claim(2)))
	// What was not notified is in the change feed: a started, a succeeded, c started.
	ids, next, err := b.engine.TaskChanges(b.ctx, cursor, 100)
	if err != nil || !slices.Equal(ids, []int64{a, c}) || next <= cursor {
		t.Errorf("TaskChanges after %d = %v, %d (%v); want [%d %d]", cursor, ids, next, err, a, c)
	}
	if ids, again, err := b.engine.TaskChanges(b.ctx, next, 100); err != nil || len(ids) != 0 || again != next {
		t.Errorf("TaskChanges after %d = %v, %d (%v); want nothing new", next, ids, again, err)
	}
	want("a release into an empty queue", sent("release", func() {
		if err := b.engine.Release(b.ctx, claimed[2].Lease); err != nil {
			t.Fatal(err)
		}
	}), "tasker_queue:wq")
	want("a release into a queue with visible work", sent("release", func() {
		if err := b.engine.Release(b.ctx, claimed[3].Lease); err != nil {
			t.Fatal(err)
		}
	}))
	want("an operator action", sent("cancel", func() {
		if err := b.engine.Cancel(b.ctx, c, "test"); err != nil {
			t.Fatal(err)
		}
	}), fmt.Sprintf("tasker_task:%d", c))
}
