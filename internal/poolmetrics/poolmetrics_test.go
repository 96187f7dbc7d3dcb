package poolmetrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/poolmetrics"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type testBundle struct {
	ctx    context.Context
	db     *pgxpool.Pool
	mq     *pgmq.Client
	reader *poolmetrics.Reader
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	db := pgtest.NewPool(t)
	if err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return &testBundle{ctx: ctx, db: db, mq: pgmq.New(db), reader: poolmetrics.New(db)}
}

func TestBacklogSumsQueueLengthIncludingInFlight(t *testing.T) {
	b := setup(t)
	for _, q := range []string{"a", "b"} {
		if err := b.mq.CreateQueue(b.ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	msgs := make([]json.RawMessage, 7)
	for i := range msgs {
		msgs[i] = json.RawMessage(`{}`)
	}
	if _, err := b.mq.SendBatch(b.ctx, "a", msgs, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.mq.SendBatch(b.ctx, "b", msgs[:3], 0); err != nil {
		t.Fatal(err)
	}
	// Two messages of queue a are in flight (read, invisible): still backlog.
	if got, err := b.mq.Read(b.ctx, "a", time.Minute, 2); err != nil || len(got) != 2 {
		t.Fatalf("read: %v %v", got, err)
	}
	got, err := b.reader.Backlog(b.ctx, []string{"a", "b", "a", "not_there"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != 10 || got.PerQueue["a"] != 7 || got.PerQueue["b"] != 3 {
		t.Fatalf("Backlog = %+v, want 10 (a 7, b 3)", got)
	}
	if len(got.Missing) != 1 || got.Missing[0] != "not_there" {
		t.Fatalf("Missing = %v", got.Missing)
	}
	// A message that waits for its time (sent with a delay, never read) is no backlog yet: no replica could take it.
	if _, err := b.mq.SendBatch(b.ctx, "b", msgs[:4], time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err := b.reader.Backlog(b.ctx, []string{"b"}); err != nil || got.Total != 3 {
		t.Fatalf("Backlog of b with 4 delayed messages = %+v, %v; want 3", got, err)
	}
}

// Through the engine: a delayed step and a retry's backoff are not backlog; the next step of a chain that
// complete_and_claim took for its worker (sent invisible, claimed) is.
func TestBacklogLeavesOutStepsWaitingForTheirTime(t *testing.T) {
	b := setup(t)
	eng := engine.New(b.db, engine.Options{})
	if _, err := eng.Admit(b.ctx, engine.TaskSpec{ExternalKey: "delayed", Queue: "w", Steps: []engine.StepSpec{
		{Name: "later", Handler: "h", Delay: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Admit(b.ctx, engine.TaskSpec{ExternalKey: "chain", Queue: "w", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"}, {Name: "b", Handler: "h", DependsOn: []string{"a"}},
		{Name: "flaky", Handler: "h", Retry: engine.RetryPolicy{MaxAttempts: 3, BackoffBase: time.Hour}}}}); err != nil {
		t.Fatal(err)
	}
	backlog := func() int64 {
		t.Helper()
		got, err := b.reader.Backlog(b.ctx, []string{"w"})
		if err != nil {
			t.Fatal(err)
		}
		return got.Total
	}
	if n := backlog(); n != 2 { // a and flaky; later waits an hour
		t.Fatalf("backlog after admission %d, want 2", n)
	}
	steps, err := eng.Claim(b.ctx, "w", 10, time.Minute, "w1")
	if err != nil || len(steps) != 2 {
		t.Fatalf("claim: %d, %v", len(steps), err)
	}
	for _, s := range steps {
		switch s.StepName {
		case "a": // b is sent claimed for this worker: in flight
			if _, claimed, err := eng.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: s.Lease}}, 1, time.Minute, "w1"); err != nil || len(claimed) != 1 {
				t.Fatalf("complete a: %d claimed, %v", len(claimed), err)
			}
		case "flaky": // retried in an hour
			if _, err := eng.Fail(b.ctx, s.Lease, engine.Failure{Message: "boom"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := backlog(); n != 1 {
		t.Fatalf("backlog %d, want 1: b in flight; not later (delayed) nor flaky (backoff)", n)
	}
}

func TestBacklogFailsOnDatabaseErrors(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	if _, err := b.reader.Backlog(ctx, []string{"a"}); err == nil {
		t.Fatal("Backlog with a cancelled context succeeded")
	}
}

func TestWorkersFreshness(t *testing.T) {
	b := setup(t)
	for _, w := range []struct {
		id       string
		inFlight int
	}{{"pod-busy", 3}, {"pod-idle", 0}, {"pod-stale", 2}, {"other", 1}} {
		if _, err := b.db.Exec(b.ctx, `SELECT tasker.worker_heartbeat($1::text, $2::text[], $3::integer, $4::integer)`,
			w.id, []string{"q"}, 4, w.inFlight); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.db.Exec(b.ctx,
		`UPDATE tasker.workers SET last_heartbeat_at = now() - interval '10 minutes' WHERE id = 'pod-stale'`); err != nil {
		t.Fatal(err)
	}
	got, err := b.reader.Workers(b.ctx, []string{"pod-busy", "pod-idle", "pod-stale", "pod-unknown"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Workers = %+v, want 3 records", got)
	}
	if w := got["pod-busy"]; !w.Fresh || w.InFlight != 3 || w.Slots != 4 {
		t.Errorf("pod-busy = %+v", w)
	}
	if w := got["pod-idle"]; !w.Fresh || w.InFlight != 0 {
		t.Errorf("pod-idle = %+v", w)
	}
	if w := got["pod-stale"]; w.Fresh || w.InFlight != 2 {
		t.Errorf("pod-stale = %+v", w)
	}
	if none, err := b.reader.Workers(b.ctx, nil, time.Minute); err != nil || len(none) != 0 {
		t.Errorf("Workers(nil) = %v, %v", none, err)
	}
}

func TestLegacyQueuesAreThoseWithUnfinishedStepsOfTheNamespace(t *testing.T) {
	b := setup(t)
	eng := engine.New(b.db, engine.Options{})
	admit := func(ns, key string, queues ...string) int64 {
		t.Helper()
		spec := engine.TaskSpec{ExternalKey: key, Namespace: ns, Name: key, Queue: queues[0]}
		for i, q := range queues {
			spec.Steps = append(spec.Steps, engine.StepSpec{Name: fmt.Sprintf("s%d", i), Handler: "h", Queue: q})
		}
		adm, err := eng.Admit(b.ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		return adm.TaskID
	}
	admit("a", "t1", "orders", "mail")
	admit("b", "t2", "reports")
	done := admit("a", "t3", "archive")
	if err := eng.Cancel(b.ctx, done, "test"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ns     string
		queues []string
		want   []string
	}{
		{"a", []string{"orders", "mail", "reports", "archive", "never"}, []string{"mail", "orders"}},
		{"b", []string{"orders", "reports"}, []string{"reports"}}, // namespace a's steps are not b's to drain
		{"c", []string{"orders", "reports"}, nil},
		{"a", nil, nil},
	}
	for _, c := range cases {
		got, err := b.reader.LegacyQueues(b.ctx, c.ns, c.queues)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("LegacyQueues(%q, %v) = %v, want %v", c.ns, c.queues, got, c.want)
		}
	}
}
