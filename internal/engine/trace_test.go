package engine_test

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// A task's trace context is stored at admission and handed out with every claim of its steps (claim and
// complete_and_claim), with the time each step became claimable.
func TestTraceContextReachesClaims(t *testing.T) {
	b := setup(t)
	tc := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "k=v"}
	id := b.admit(t, engine.TaskSpec{Queue: "traced", TraceContext: tc, Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}},
	}})
	plain := b.admit(t, engine.TaskSpec{Queue: "plain", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})

	if st := b.task(t, id); !maps.Equal(st.TraceContext, tc) {
		t.Errorf("GetTask: trace context %v, want %v", st.TraceContext, tc)
	}
	a := b.claimOne(t, "traced", 30*time.Second, 5*time.Second)
	var got map[string]string
	if err := json.Unmarshal(a.TraceContext, &got); err != nil || !maps.Equal(got, tc) {
		t.Errorf("claim: trace context %s (%v), want %v", a.TraceContext, err, tc)
	}
	// Ready when admitted, claimed after: both on the database's clock.
	started := *b.task(t, id).Step("a").StartedAt
	if a.ReadyAt.IsZero() || a.ReadyAt.After(started) {
		t.Errorf("claim: ready at %v, want a time no later than the claim (%v)", a.ReadyAt, started)
	}

	_, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease}}, 1, 30*time.Second, "w1")
	if err != nil || len(claimed) != 1 {
		t.Fatalf("complete and claim: %v, %v", claimed, err)
	}
	got = nil
	if err := json.Unmarshal(claimed[0].TraceContext, &got); err != nil || !maps.Equal(got, tc) {
		t.Errorf("complete_and_claim: trace context %s (%v), want %v", claimed[0].TraceContext, err, tc)
	}
	// Claimed as it became ready: no queue wait.
	if started := *b.task(t, id).Step("b").StartedAt; !claimed[0].ReadyAt.Equal(started) {
		t.Errorf("complete_and_claim: ready at %v, want the claim's time %v", claimed[0].ReadyAt, started)
	}

	// A trace_context of JSON null (a caller's "none") is stored as none.
	if _, err := b.pool.Exec(b.ctx, `SELECT * FROM tasker.admit($1::jsonb)`, `{"external_key": "`+nextKey("sql")+
		`", "queue": "nulltrace", "trace_context": null, "steps": [{"name": "a", "handler": "h"}]}`); err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tasker.tasks WHERE trace_context IS NOT NULL`).Scan(&stored); err != nil || stored != 1 {
		t.Errorf("%d tasks with a trace context (%v), want 1", stored, err)
	}
	p := b.claimOne(t, "plain", 30*time.Second, 5*time.Second)
	if p.TraceContext != nil || b.task(t, plain).TraceContext != nil {
		t.Errorf("a task without trace context: claim %s, GetTask %v", p.TraceContext, b.task(t, plain).TraceContext)
	}
}

// The trace context is checked at admission: by the engine in Go, and by tasker.admit for other callers.
func TestTraceContextChecked(t *testing.T) {
	b := setup(t)
	_, err := b.engine.Admit(b.ctx, engine.TaskSpec{ExternalKey: nextKey("t"), Queue: "q",
		TraceContext: map[string]string{"traceparent": strings.Repeat("x", 3000)},
		Steps:        []engine.StepSpec{{Name: "a", Handler: "h"}}})
	if !errors.Is(err, engine.ErrInvalidSpec) || !strings.Contains(err.Error(), "traceContext") {
		t.Errorf("a trace context of 3000 bytes: %v, want an invalid spec naming traceContext", err)
	}
	for _, doc := range []string{
		`"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"`, // a string, not an object
		`{"traceparent": 1}`,
		`{"traceparent": "` + strings.Repeat("x", 3000) + `"}`,
	} {
		_, err := b.pool.Exec(b.ctx, `SELECT * FROM tasker.admit($1::jsonb)`,
			`{"external_key": "`+nextKey("sql")+`", "queue": "q", "steps": [{"name": "a", "handler": "h"}], "trace_context": `+doc+`}`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22023" || !strings.Contains(pgErr.Message, "spec.trace_context: must be an object of strings") {
			t.Errorf("tasker.admit with trace_context %.40s: %v, want 22023 naming spec.trace_context", doc, err)
		}
	}
}

// A worker of this release works against a database whose claims predate migration 18 (a worker may be upgraded
// before the operator migrates): the claims' old columns, without trace context or ready time.
func TestClaimsWithoutTraceColumns(t *testing.T) {
	b := setup(t)
	// tasker.claim and complete_and_claim as schema 16 defined them: the same, without the last two columns.
	if _, err := b.pool.Exec(b.ctx, `
		DROP FUNCTION tasker.claim(text, integer, integer, text);
		CREATE FUNCTION tasker.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer,
		                             worker_id text DEFAULT NULL)
		RETURNS TABLE (step_id bigint, task_id bigint, step_name text, handler text, inputs jsonb, task_context jsonb,
		               dependency_results jsonb, attempt integer, lease uuid, timeout_seconds integer,
		               lease_expires_at timestamptz)
		LANGUAGE sql AS $$ SELECT c.step_id, c.task_id, c.step_name, c.handler, c.inputs, c.task_context,
		    c.dependency_results, c.attempt, c.lease, c.timeout_seconds, c.lease_expires_at
		    FROM tasker_internal.claim(queue_name, max_messages, visibility_timeout_seconds, worker_id) AS c $$;
		DROP FUNCTION tasker.complete_and_claim(uuid[], jsonb[], integer, integer, text);
		CREATE FUNCTION tasker.complete_and_claim(leases uuid[], results jsonb[], max_claims integer,
		                             visibility_timeout_seconds integer, worker_id text DEFAULT NULL)
		RETURNS TABLE (lease uuid, ok boolean, status text, queue text, step_id bigint, task_id bigint, step_name text,
		               handler text, inputs jsonb, task_context jsonb, dependency_results jsonb, attempt integer,
		               timeout_seconds integer, lease_expires_at timestamptz)
		LANGUAGE sql AS $$ SELECT c.lease, c.ok, c.status, c.queue, c.step_id, c.task_id, c.step_name, c.handler,
		    c.inputs, c.task_context, c.dependency_results, c.attempt, c.timeout_seconds, c.lease_expires_at
		    FROM tasker_internal.complete_and_claim(leases, results, max_claims, visibility_timeout_seconds, worker_id) AS c $$;
	`); err != nil {
		t.Fatal(err)
	}
	id := b.admit(t, engine.TaskSpec{Queue: "old", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"}, {Name: "b", Handler: "h", DependsOn: []string{"a"}}}})
	a := b.claimOne(t, "old", 30*time.Second, 5*time.Second)
	if a.StepName != "a" || a.TraceContext != nil || !a.ReadyAt.IsZero() {
		t.Fatalf("claim: %+v", a)
	}
	out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease}}, 1, 30*time.Second, "w1")
	if err != nil || out[0] != nil || len(claimed) != 1 || claimed[0].StepName != "b" {
		t.Fatalf("complete and claim: %v, %+v, %v", out, claimed, err)
	}
	if err := b.engine.Complete(b.ctx, claimed[0].Lease, nil); err != nil {
		t.Fatal(err)
	}
	if st := b.task(t, id); st.Phase != engine.TaskSucceeded {
		t.Errorf("task %s", st.Phase)
	}
}
