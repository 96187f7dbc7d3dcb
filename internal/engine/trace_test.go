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
