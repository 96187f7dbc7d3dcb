package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// reportChild is a child workflow of two steps: fetch, then report; its output "total" is report's total.
func reportChild(withOutputs bool) *engine.ChildSpec {
	c := &engine.ChildSpec{
		Template:      "report",
		Context:       json.RawMessage(`{"format":"csv","params":{"region":"eu"}}`),
		ArgumentsFrom: map[string]string{"count": "$.deps.prepare.count"},
		Parameters:    map[string]engine.ChildParameter{"count": {Type: "number"}},
		Steps: []engine.StepSpec{
			{Name: "fetch", Handler: "fetch"},
			{Name: "report", Handler: "report", DependsOn: []string{"fetch"}},
		},
	}
	if withOutputs {
		c.Outputs = map[string]string{"total": "$.steps.report.total", "format": "$.context.format"}
	}
	return c
}

// A child workflow runs when its step becomes ready: its steps get the child's context with the parameters (a
// literal one and one taken from a dependency's result), see their dependencies' results by their names within
// the child, and the step succeeds with the child's outputs, which its dependents and the task's outputs see.
func TestChildWorkflowRunsAndGivesItsOutputs(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "child", Context: json.RawMessage(`{"who":"parent"}`),
		Outputs: map[string]string{"total": "$.steps.sum.total"},
		Steps: []engine.StepSpec{
			{Name: "prepare", Handler: "prepare"},
			{Name: "run", DependsOn: []string{"prepare"}, Child: reportChild(true)},
			{Name: "sum", Handler: "sum", DependsOn: []string{"run"}},
		}})
	var seen []engine.ClaimedStep
	b.drain(t, "child", id, func(s engine.ClaimedStep) (json.RawMessage, error) {
		seen = append(seen, s)
		switch s.StepName {
		case "prepare":
			return json.RawMessage(`{"count":3}`), nil
		case "run/fetch":
			return json.RawMessage(`{"rows":[1,2,3]}`), nil
		case "run/report":
			return json.RawMessage(`{"total":6}`), nil
		case "sum":
			var run struct{ Total int }
			if err := json.Unmarshal(s.DependencyResults["run"], &run); err != nil {
				return nil, err
			}
			return json.RawMessage(fmt.Sprintf(`{"total":%d}`, run.Total*10)), nil
		}
		return nil, fmt.Errorf("unexpected step %s", s.StepName)
	})
	var names []string
	for _, s := range seen {
		names = append(names, s.StepName)
	}
	if want := []string{"prepare", "run/fetch", "run/report", "sum"}; !slices.Equal(names, want) {
		t.Fatalf("ran %v, want %v", names, want)
	}
	for _, s := range seen[1:3] {
		if string(s.TaskContext) != `{"format": "csv", "params": {"count": 3, "region": "eu"}}` {
			t.Errorf("%s got the context %s, want the child's with its parameters", s.StepName, s.TaskContext)
		}
	}
	if d := seen[2].DependencyResults; len(d) != 1 || string(d["fetch"]) != `{"rows": [1, 2, 3]}` {
		t.Errorf("run/report got the dependency results %s, want fetch's by its name in the child", seen[2].DependencyResults)
	}
	if string(seen[3].TaskContext) != `{"who": "parent"}` {
		t.Errorf("sum got the context %s, want the task's", seen[3].TaskContext)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{"prepare": engine.StepSucceeded,
		"run": engine.StepSucceeded, "sum": engine.StepSucceeded, "run/fetch": engine.StepSucceeded,
		"run/report": engine.StepSucceeded})
	run := st.Step("run")
	if string(run.Result) != `{"total": 6, "format": "csv"}` {
		t.Errorf("run's result is %s, want the child's outputs", run.Result)
	}
	if c := run.Child; c == nil || c.Template != "report" || c.Steps != 2 || c.Counts[engine.StepSucceeded] != 2 {
		t.Errorf("run's child: %+v", run.Child)
	}
	if f := st.Step("run/fetch"); f.ChildOf != "run" || len(f.DependsOn) != 0 {
		t.Errorf("run/fetch: child of %q, depends on %v", f.ChildOf, f.DependsOn)
	}
	if d := st.Step("sum").DependsOn; !slices.Equal(d, []string{"run"}) {
		t.Errorf("sum depends on %v, want [run] (not the child's steps)", d)
	}
	if string(st.Outputs) != `{"total": 60}` {
		t.Errorf("task outputs %s, want {\"total\": 60}", st.Outputs)
	}
}

// Without declared outputs the step's result is its child's last steps' results by name. With forEach, each
// instance runs the child, with the element as "$.item" for its arguments.
func TestChildWorkflowPerMapItem(t *testing.T) {
	b := setup(t)
	child := &engine.ChildSpec{Template: "greet", Context: json.RawMessage(`{"params":{}}`),
		ArgumentsFrom: map[string]string{"name": "$.item"},
		Parameters:    map[string]engine.ChildParameter{"name": {Type: "string"}},
		Steps:         []engine.StepSpec{{Name: "hello", Handler: "hello"}, {Name: "bye", Handler: "bye"}}}
	id := b.admit(t, engine.TaskSpec{Queue: "childmap", Context: json.RawMessage(`{"names":["ann","bob","cy"]}`),
		Steps: []engine.StepSpec{
			{Name: "greet", ForEach: "$.context.names", Child: child},
			{Name: "count", Handler: "count", DependsOn: []string{"greet"}},
		}})
	var counted string
	b.drain(t, "childmap", id, func(s engine.ClaimedStep) (json.RawMessage, error) {
		var ctx struct{ Params struct{ Name string } }
		switch {
		case s.StepName == "count":
			counted = string(s.DependencyResults["greet"])
			return json.RawMessage(`1`), nil
		case json.Unmarshal(s.TaskContext, &ctx) != nil || ctx.Params.Name == "":
			return nil, fmt.Errorf("%s: no name in %s", s.StepName, s.TaskContext)
		}
		local := s.StepName[strings.LastIndex(s.StepName, "/")+1:]
		return json.RawMessage(fmt.Sprintf("%q", local+" "+ctx.Params.Name)), nil
	})
	want := `[{"bye": "bye ann", "hello": "hello ann"}, {"bye": "bye bob", "hello": "hello bob"}, {"bye": "bye cy", "hello": "hello cy"}]`
	if string(counted) != want {
		t.Errorf("count got %s, want %s", counted, want)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{"greet": engine.StepSucceeded})
	if len(st.Steps) != 2 {
		t.Errorf("status has %d steps, want 2: not the instances, nor their children", len(st.Steps))
	}
}

// A child step that fails for good fails the child: the child workflow step runs it again, afresh, while its retry
// policy allows; then it fails, and its task with it. Retrying the step by hand runs the child once more.
func TestChildWorkflowFailureRunsItAgain(t *testing.T) {
	b := setup(t)
	child := reportChild(false)
	child.ArgumentsFrom, child.Parameters = nil, nil
	child.Steps[1].Retry = engine.RetryPolicy{MaxAttempts: 1}
	id := b.admit(t, engine.TaskSpec{Queue: "childfail", Steps: []engine.StepSpec{
		{Name: "run", Child: child, Retry: engine.RetryPolicy{MaxAttempts: 2}},
		{Name: "after", Handler: "after", DependsOn: []string{"run"}},
	}})
	fetches, reports := 0, 0
	failing := func(s engine.ClaimedStep) (json.RawMessage, error) {
		switch s.StepName {
		case "run/fetch":
			fetches++
			return json.RawMessage(`1`), nil
		case "run/report":
			reports++
			return nil, errors.New("report broke")
		}
		return json.RawMessage(`1`), nil
	}
	b.drain(t, "childfail", id, failing)
	if fetches != 2 || reports != 2 {
		t.Errorf("fetch ran %d times, report %d: want the child run twice (maxAttempts 2)", fetches, reports)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"run": engine.StepFailed,
		"run/fetch": engine.StepSucceeded, "run/report": engine.StepFailed, "after": engine.StepSkipped})
	if msg := st.Step("run").LastErrorMessage; !strings.Contains(msg, "child workflow report failed: step report: report broke") {
		t.Errorf("run's error: %q", msg)
	}
	if len(st.Steps) != 4 {
		t.Errorf("%d steps after the re-run, want 4 (the first run's child discarded)", len(st.Steps))
	}
	// The second run's first step waited for run's backoff (its message visible only then).
	var delayed int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tasker.step_transitions AS x JOIN tasker.steps AS s ON s.id = x.step_id
		WHERE x.task_id = $1 AND s.name = 'run/fetch' AND x.to_state = 'enqueued' AND x.metadata ? 'visible_at'`, id).Scan(&delayed); err != nil {
		t.Fatal(err)
	}
	if delayed != 1 {
		t.Errorf("run/fetch was enqueued with a delay %d times, want once (the re-run, after run's backoff)", delayed)
	}

	// By hand: retrying the child's failed step resumes the child and the task.
	if err := b.engine.RetryStep(b.ctx, id, "run/report"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"run": engine.StepMapping,
		"run/report": engine.StepEnqueued})
	b.drain(t, "childfail", id, func(s engine.ClaimedStep) (json.RawMessage, error) { return json.RawMessage(`2`), nil })
	st = b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{"run": engine.StepSucceeded, "after": engine.StepSucceeded})
	if string(st.Step("run").Result) != `{"report": 2}` {
		t.Errorf("run's result %s, want its last step's by name", st.Step("run").Result)
	}
}

// Retrying a failed child workflow step by hand runs its whole child again; an argument that cannot be taken fails
// the step with a message naming it.
func TestChildWorkflowArgumentsAndManualRetry(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "childarg", Steps: []engine.StepSpec{
		{Name: "prepare", Handler: "prepare"},
		{Name: "run", DependsOn: []string{"prepare"}, Child: reportChild(false), Retry: engine.RetryPolicy{MaxAttempts: 1}},
	}})
	b.drain(t, "childarg", id, func(s engine.ClaimedStep) (json.RawMessage, error) {
		return json.RawMessage(`{"count":"three"}`), nil
	})
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"run": engine.StepFailed})
	if msg := st.Step("run").LastErrorMessage; msg != "child workflow report: argument count: $.deps.prepare.count gave string, not number" {
		t.Errorf("run's error: %q", msg)
	}
	// Resolved by hand, the step lets its task finish.
	if err := b.engine.ResolveStep(b.ctx, id, "run", "skip the report"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, map[string]engine.StepPhase{"run": engine.StepResolved})
}

// A child whose steps are wrong is refused at admission, naming the field.
func TestChildWorkflowValidation(t *testing.T) {
	b := setup(t)
	for _, tc := range []struct {
		name  string
		child *engine.ChildSpec
		want  string
	}{
		{"no steps", &engine.ChildSpec{Template: "x"}, "steps[0].child.steps: at least one step is required"},
		{"cycle", &engine.ChildSpec{Template: "x", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", DependsOn: []string{"b"}}, {Name: "b", Handler: "h", DependsOn: []string{"a"}}}},
			"steps[0].child.steps"},
		{"no handler", &engine.ChildSpec{Template: "x", Steps: []engine.StepSpec{{Name: "a"}}},
			"steps[0].child.steps[0].handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.engine.Admit(b.ctx, engine.TaskSpec{ExternalKey: nextKey("v"), Queue: "childv",
				Steps: []engine.StepSpec{{Name: "run", Child: tc.child}}})
			if !errors.Is(err, engine.ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("admit: %v, want an invalid spec naming %s", err, tc.want)
			}
		})
	}
}

// Retrying a failed child workflow step by hand runs its whole child again, afresh.
func TestChildWorkflowStepRetriedByHand(t *testing.T) {
	b := setup(t)
	child := reportChild(false)
	child.ArgumentsFrom, child.Parameters = nil, nil
	id := b.admit(t, engine.TaskSpec{Queue: "childretry", Steps: []engine.StepSpec{
		{Name: "run", Child: child, Retry: engine.RetryPolicy{MaxAttempts: 1}},
	}})
	fetches := 0
	broken := true
	h := func(s engine.ClaimedStep) (json.RawMessage, error) {
		if s.StepName == "run/fetch" {
			fetches++
		}
		if s.StepName == "run/report" && broken {
			return nil, &testFailure{engine.Failure{Message: "broken", Permanent: true}}
		}
		return json.RawMessage(`"ok"`), nil
	}
	b.drain(t, "childretry", id, h)
	wantPhase(t, b.task(t, id), engine.TaskFailed, map[string]engine.StepPhase{"run": engine.StepFailed})
	broken = false
	if err := b.engine.RetryStep(b.ctx, id, "run"); err != nil {
		var de *engine.DatabaseError
		if errors.As(err, &de) {
			t.Fatal(de.Err)
		}
		t.Fatal(err)
	}
	b.drain(t, "childretry", id, h)
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{"run": engine.StepSucceeded,
		"run/fetch": engine.StepSucceeded, "run/report": engine.StepSucceeded})
	if fetches != 2 || len(st.Steps) != 3 || st.Step("run").Attempts != 2 {
		t.Errorf("fetch ran %d times, %d steps, run's attempts %d: want the child run afresh", fetches, len(st.Steps),
			st.Step("run").Attempts)
	}
}
