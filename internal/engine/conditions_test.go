package engine_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// A branch taken and one not taken: the condition is evaluated over the context and the dependency's result as
// the step becomes ready; the omitted step finishes without running, says why, and its children run with a null
// result for it.
func TestConditionsTakeOneBranch(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "cond", Context: json.RawMessage(`{"region":"eu"}`), Steps: []engine.StepSpec{
		{Name: "review", Handler: "h"},
		{Name: "ship", Handler: "h", DependsOn: []string{"review"}, When: `$.deps.review.approved == true`},
		{Name: "refund", Handler: "h", DependsOn: []string{"review"}, When: `$.deps.review.approved == false`},
		{Name: "vat", Handler: "h", DependsOn: []string{"review"}, When: `$.context.region == "eu"`},
		{Name: "notify", Handler: "h", DependsOn: []string{"ship", "refund"}},
	}})
	review := b.claimOne(t, "cond", time.Minute, 5*time.Second)
	// The reporting worker is not handed conditional children (they go through the queue, or are omitted).
	out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: review.Lease,
		Result: json.RawMessage(`{"approved":true}`)}}, 10, time.Minute, "w")
	if err != nil || out[0] != nil || len(claimed) != 0 {
		t.Fatalf("complete review: %v, %d claimed, %v", out, len(claimed), err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskRunning, map[string]engine.StepPhase{"review": engine.StepSucceeded,
		"ship": engine.StepEnqueued, "refund": engine.StepOmitted, "vat": engine.StepEnqueued, "notify": engine.StepPending})
	hist, err := b.engine.History(b.ctx, id, "refund")
	if err != nil {
		t.Fatal(err)
	}
	last := hist[len(hist)-1]
	if last.To != "omitted" || last.Reason != "condition false" || !strings.Contains(string(last.Metadata), `approved\" == false`) {
		t.Errorf("refund's last transition %+v", last)
	}
	both, err := b.engine.Claim(b.ctx, "cond", 10, time.Minute, "w")
	if err != nil || len(both) != 2 {
		t.Fatalf("claim ship and vat: %d, %v", len(both), err)
	}
	for _, s := range both {
		if err := b.engine.Complete(b.ctx, s.Lease, json.RawMessage(`"done"`)); err != nil {
			t.Fatal(err)
		}
	}
	notify := b.claimOne(t, "cond", time.Minute, 5*time.Second)
	if notify.StepName != "notify" || string(notify.DependencyResults["refund"]) != "null" ||
		string(notify.DependencyResults["ship"]) != `"done"` {
		t.Fatalf("notify claimed %s with %s", notify.StepName, notify.DependencyResults)
	}
	if err := b.engine.Complete(b.ctx, notify.Lease, nil); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, map[string]engine.StepPhase{"refund": engine.StepOmitted})

	// An omitted step cannot be completed or resolved by hand afterwards: its children went on already.
	if err := b.engine.ResolveStep(b.ctx, id, "refund", "x"); err == nil || !strings.Contains(err.Error(), "omitted") {
		t.Errorf("resolve an omitted step: %v", err)
	}
}

// Conditions of root steps see the context only; omitted all the way, a task finishes at admission. A chain of
// false conditions omits step after step; an unknown comparison counts as false.
func TestConditionsAtAdmission(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "cond0", Context: json.RawMessage(`{"n":"7"}`), Steps: []engine.StepSpec{
		{Name: "a", Handler: "h", When: `$.context.n > 5`}, // a string compared with a number: unknown
		{Name: "b", Handler: "h", DependsOn: []string{"a"}, When: `exists($.deps.a.x)`},
	}})
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, map[string]engine.StepPhase{"a": engine.StepOmitted, "b": engine.StepOmitted})
	b.claimNone(t, "cond0")
}

// Parents of conditional steps of two tasks, completed in one batch by two workers at once, in opposite orders:
// the whole lock sets are taken in one order, so neither deadlocks.
func TestConditionalCompletionsAcrossTasks(t *testing.T) {
	b := setup(t)
	spec := func() engine.TaskSpec {
		return engine.TaskSpec{Queue: "condx", Steps: []engine.StepSpec{
			{Name: "p1", Handler: "h"}, {Name: "p2", Handler: "h"},
			{Name: "c", Handler: "h", DependsOn: []string{"p1", "p2"}, When: `$.deps.p1 == 1`},
			{Name: "after", Handler: "h", DependsOn: []string{"c"}},
		}}
	}
	t1, t2 := b.admit(t, spec()), b.admit(t, spec())
	steps, err := b.engine.Claim(b.ctx, "condx", 10, time.Minute, "w")
	if err != nil || len(steps) != 4 {
		t.Fatalf("claim: %d, %v", len(steps), err)
	}
	var first, second []engine.Completion
	for _, s := range steps {
		c := engine.Completion{Lease: s.Lease, Result: json.RawMessage(`2`)}
		if s.StepName == "p1" {
			first = append(first, c)
		} else {
			second = append([]engine.Completion{c}, second...)
		}
	}
	errc := make(chan error, 2)
	for _, batch := range [][]engine.Completion{first, second} {
		go func() {
			_, err := b.engine.CompleteMany(b.ctx, batch)
			errc <- err
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []int64{t1, t2} {
		wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"c": engine.StepOmitted,
			"after": engine.StepEnqueued})
	}
}

func TestConditionsAreCheckedAtAdmission(t *testing.T) {
	b := setup(t)
	problems, err := b.engine.ConditionProblems(b.ctx, []string{`$.deps.a.ok == true`, `$.deps.a`, `$.(`, `true`})
	if err != nil {
		t.Fatal(err)
	}
	if problems[0] != "" || !strings.Contains(problems[1], "must be a predicate") ||
		!strings.Contains(problems[2], "not a SQL/JSON path expression") || problems[3] != "" {
		t.Errorf("problems %q", problems)
	}
	_, err = b.engine.Admit(b.ctx, engine.TaskSpec{ExternalKey: "bad-when", Queue: "q", Steps: []engine.StepSpec{
		{Name: "a", Handler: "h"}, {Name: "b", Handler: "h", DependsOn: []string{"a"}, When: `$.deps.a`}}})
	if err == nil || !strings.Contains(err.Error(), "spec.steps[1].when: must be a predicate") {
		t.Errorf("admit with a non-predicate: %v", err)
	}
}

// Omission goes round by round, not recursively: a chain of 1,000 steps whose conditions are all false is
// omitted whole at admission (a recursive walk ran out of PostgreSQL's stack at a depth of 300).
func TestLongChainOfOmittedSteps(t *testing.T) {
	b := setup(t)
	spec := engine.TaskSpec{Queue: "deep"}
	for i := range 1000 {
		s := engine.StepSpec{Name: fmt.Sprintf("s%d", i), Handler: "h", When: "false"}
		if i > 0 {
			s.DependsOn = []string{fmt.Sprintf("s%d", i-1)}
		}
		spec.Steps = append(spec.Steps, s)
	}
	id := b.admit(t, spec)
	st := b.task(t, id)
	if st.Phase != engine.TaskSucceeded || st.Counts[engine.StepOmitted] != 1000 {
		t.Fatalf("task %s, counts %v: want succeeded with 1,000 omitted steps", st.Phase, st.Counts)
	}
}
