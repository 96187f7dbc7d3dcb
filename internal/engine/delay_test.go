package engine_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// A delayed root step is enqueued with its message invisible until the delay is over (next_attempt_at says
// when), and its first claim comes no earlier, by the database's clock.
func TestDelayedStepBecomesClaimableAfterItsDelay(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "later", Steps: []engine.StepSpec{
		{Name: "now", Handler: "h"}, {Name: "soon", Handler: "h", Delay: 400 * time.Millisecond}}})
	st := b.task(t, id)
	soon := st.Step("soon")
	if soon.Phase != engine.StepEnqueued || soon.NextAttemptAt == nil || st.Step("now").NextAttemptAt != nil {
		t.Fatalf("after admission: soon %s next %v, now next %v", soon.Phase, soon.NextAttemptAt, st.Step("now").NextAttemptAt)
	}
	first := b.claimOne(t, "later", time.Minute, 5*time.Second)
	if first.StepName != "now" {
		t.Fatalf("first claim took %s, want the undelayed step", first.StepName)
	}
	second := b.claimOne(t, "later", time.Minute, 10*time.Second)
	if second.StepName != "soon" {
		t.Fatalf("second claim took %s", second.StepName)
	}
	hist, err := b.engine.History(b.ctx, id, "soon")
	if err != nil {
		t.Fatal(err)
	}
	var claimedAt time.Time
	var visible string
	for _, h := range hist {
		switch h.To {
		case "enqueued":
			var m struct {
				VisibleAt string `json:"visible_at"`
			}
			_ = json.Unmarshal(h.Metadata, &m)
			visible = m.VisibleAt
		case "running":
			claimedAt = h.At
		}
	}
	if visible == "" || claimedAt.Before(*soon.NextAttemptAt) {
		t.Errorf("soon: enqueued with visible_at %q, claimed at %s, before it was due (%s)", visible, claimedAt, soon.NextAttemptAt)
	}
}

// A child with a not-before time ahead is not taken by its parent's complete_and_claim, stays enqueued and
// invisible, and a cancellation removes its message; resolving a delayed step lets its children run at once.
func TestDelayedChildIsNotClaimedEarly(t *testing.T) {
	b := setup(t)
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	id := b.admit(t, engine.TaskSpec{Queue: "nb", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}, NotBefore: later},
		{Name: "c", Handler: "h", DependsOn: []string{"b"}},
	}})
	a := b.claimOne(t, "nb", time.Minute, 5*time.Second)
	out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: a.Lease}}, 10, time.Minute, "w")
	if err != nil || out[0] != nil {
		t.Fatalf("complete a: %v %v", out, err)
	}
	if len(claimed) != 0 {
		t.Fatalf("complete_and_claim took %s, which is not due for an hour", claimed[0].StepName)
	}
	st := b.task(t, id)
	if s := st.Step("b"); s.Phase != engine.StepEnqueued || s.NextAttemptAt == nil || !s.NextAttemptAt.Equal(later) {
		t.Fatalf("b: %s, next attempt %v, want enqueued until %s", s.Phase, s.NextAttemptAt, later)
	}
	b.claimNone(t, "nb")
	if n := b.queueLength(t, "nb"); n != 1 {
		t.Fatalf("queue holds %d messages, want b's one", n)
	}

	// An operator resolves the waiting step: its message goes, and c runs now.
	if err := b.engine.ResolveStep(b.ctx, id, "b", "not needed"); err != nil {
		t.Fatal(err)
	}
	if c := b.claimOne(t, "nb", time.Minute, 5*time.Second); c.StepName != "c" {
		t.Fatalf("claimed %s after resolving b, want c", c.StepName)
	}

	// Cancelling a task removes a delayed step's message too.
	id2 := b.admit(t, engine.TaskSpec{Queue: "nb", Steps: []engine.StepSpec{{Name: "x", Handler: "h", Delay: time.Hour}}})
	if err := b.engine.Cancel(b.ctx, id2, "test"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id2), engine.TaskCancelled, map[string]engine.StepPhase{"x": engine.StepCancelled})
	if n := b.queueLength(t, "nb"); n != 1 { // c's message, claimed above, is still in flight
		t.Errorf("queue holds %d messages after the cancel, want only c's", n)
	}
}

func TestAdmitDocumentValidatesDelays(t *testing.T) {
	b := setup(t)
	for doc, want := range map[string]string{
		`{"external_key":"d1","queue":"q","steps":[{"name":"a","handler":"h","not_before":"tomorrow"}]}`:             `spec.steps[0].not_before: must be an RFC 3339 time with its offset`,
		`{"external_key":"d2","queue":"q","steps":[{"name":"a","handler":"h","not_before":"2026-12-06T09:00:00"}]}`:  `spec.steps[0].not_before: must be an RFC 3339 time`,
		`{"external_key":"d3","queue":"q","steps":[{"name":"a","handler":"h","not_before":"2026-02-30T09:00:00Z"}]}`: `spec.steps[0].not_before: must be an RFC 3339 time`,
		`{"external_key":"d4","queue":"q","steps":[{"name":"a","handler":"h","delay_seconds":-1}]}`:                  `spec.steps[0].delay_seconds: must be 0 to 315360000 seconds`,
		`{"external_key":"d5","queue":"q","steps":[{"name":"a","handler":"h","delay_seconds":"60"}]}`:                `spec.steps[0].delay_seconds: must be a number`,
	} {
		_, err := b.pool.Exec(b.ctx, `SELECT * FROM tasker.admit($1::jsonb)`, doc)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "22023") {
			t.Errorf("admit %s: %v, want 22023 %q", doc, err, want)
		}
	}
	var id int64
	if err := b.pool.QueryRow(b.ctx, `SELECT task_id FROM tasker.admit($1::jsonb)`,
		`{"external_key":"ok","queue":"q","steps":[{"name":"a","handler":"h","delay_seconds":1.5,"not_before":"2020-01-01T00:00:00+02:00"}]}`).Scan(&id); err != nil {
		t.Fatalf("a valid delay: %v", err)
	}
	var delayMs int64
	var notBefore time.Time
	if err := b.pool.QueryRow(b.ctx, `SELECT delay_ms, not_before FROM tasker.steps WHERE task_id = $1`, id).Scan(&delayMs, &notBefore); err != nil ||
		delayMs != 1500 || !notBefore.Equal(time.Date(2019, 12, 31, 22, 0, 0, 0, time.UTC)) {
		t.Errorf("stored delay %d ms, not before %s (%v)", delayMs, notBefore, err)
	}
}
