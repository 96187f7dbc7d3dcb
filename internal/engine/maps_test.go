package engine_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// runAll claims and completes every claimable step of queue until none is left, with result(step) as each result;
// it returns the names of the steps it ran, in order. (A claim that gathers a map step returns nothing, and the
// map's children are claimable afterwards: only two empty claims in a row end it.)
func (b *testBundle) runAll(t *testing.T, queue string, result func(engine.ClaimedStep) json.RawMessage) []string {
	t.Helper()
	var ran []string
	for empty := 0; ; {
		steps, err := b.engine.Claim(b.ctx, queue, 100, time.Minute, "w")
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) == 0 {
			if empty++; empty == 2 {
				return ran
			}
			continue
		}
		empty = 0
		done := make([]engine.Completion, len(steps))
		for i, s := range steps {
			done[i] = engine.Completion{Lease: s.Lease, Result: result(s)}
			ran = append(ran, s.StepName)
		}
		out, err := b.engine.CompleteMany(b.ctx, done)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range out {
			if e != nil {
				t.Fatalf("complete %s: %v", steps[i].StepName, e)
			}
		}
	}
}

// A map over a parent's result: the instances are made when the step becomes ready, each gets its element, index
// and the map step's dependency results; they run in parallel (claimed together); the reducer gets their results
// as one array in index order; status shows the map as one step with counts.
func TestMapRunsOncePerItem(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "map", Context: json.RawMessage(`{"factor":10}`), Steps: []engine.StepSpec{
		{Name: "list", Handler: "list"},
		{Name: "square", Handler: "square", DependsOn: []string{"list"}, ForEach: `$.deps.list.items`,
			Inputs: json.RawMessage(`{"power":2}`)},
		{Name: "sum", Handler: "sum", DependsOn: []string{"square"}},
	}})
	list := b.claimOne(t, "map", time.Minute, 5*time.Second)
	if list.ItemIndex != -1 || list.Item != nil {
		t.Errorf("an ordinary step has item %s, index %d", list.Item, list.ItemIndex)
	}
	// The reporting worker is not handed the map step (it is expanded instead).
	out, claimed, err := b.engine.CompleteAndClaim(b.ctx, []engine.Completion{{Lease: list.Lease,
		Result: json.RawMessage(`{"items":[3,1,4,1,5]}`)}}, 10, time.Minute, "w")
	if err != nil || out[0] != nil || len(claimed) != 0 {
		t.Fatalf("complete list: %v, %d claimed, %v", out, len(claimed), err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskRunning, map[string]engine.StepPhase{"list": engine.StepSucceeded,
		"square": engine.StepMapping, "sum": engine.StepPending})
	if len(st.Steps) != 3 {
		t.Errorf("status lists %d steps, want the 3 of the spec (not the instances)", len(st.Steps))
	}
	if m := st.Step("square").Map; m == nil || m.Items != 5 || m.Counts[engine.StepEnqueued] != 5 {
		t.Errorf("square's map: %+v", m)
	}

	steps, err := b.engine.Claim(b.ctx, "map", 100, time.Minute, "w")
	if err != nil || len(steps) != 5 {
		t.Fatalf("claim the instances: %d, %v", len(steps), err)
	}
	for i, s := range steps {
		if s.StepName != fmt.Sprintf("square[%d]", i) || s.ItemIndex != i || s.Handler != "square" ||
			string(s.Inputs) != `{"power": 2}` || string(s.DependencyResults["list"]) != `{"items": [3, 1, 4, 1, 5]}` ||
			len(s.DependencyResults) != 1 || string(s.TaskContext) != `{"factor": 10}` {
			t.Errorf("instance %d: %+v", i, s)
		}
	}
	// Finished out of order; each result is the square of its item.
	slices.Reverse(steps)
	for _, s := range steps {
		var n int
		if err := json.Unmarshal(s.Item, &n); err != nil {
			t.Fatal(err)
		}
		if err := b.engine.Complete(b.ctx, s.Lease, json.RawMessage(fmt.Sprint(n*n))); err != nil {
			t.Fatal(err)
		}
	}
	st = b.task(t, id)
	if m := st.Step("square").Map; m == nil || m.Done() != 5 || m.Counts[engine.StepSucceeded] != 5 {
		t.Errorf("square's map once all finished: %+v", m)
	}
	// The completion of the last instance leaves the gathering to the next claim of the queue.
	sum := b.claimOne(t, "map", time.Minute, 5*time.Second)
	if sum.StepName != "sum" || string(sum.DependencyResults["square"]) != `[9, 1, 16, 1, 25]` {
		t.Fatalf("claimed %s with %s", sum.StepName, sum.DependencyResults)
	}
	if err := b.engine.Complete(b.ctx, sum.Lease, nil); err != nil {
		t.Fatal(err)
	}
	st = b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, map[string]engine.StepPhase{"square": engine.StepSucceeded})
	hist, err := b.engine.History(b.ctx, id, "square")
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, h := range hist {
		reasons = append(reasons, h.From+">"+h.To+": "+h.Reason)
	}
	want := []string{"pending>mapping: forEach gave 5 items", "mapping>succeeded: all instances finished"}
	if !slices.Equal(reasons, want) {
		t.Errorf("square's history %q, want %q", reasons, want)
	}
}

// A map over the context at admission; an empty array finishes the step at once with []; a path that finds no
// array fails the step (and the task) with an error that says why; more than MaxMapItems too.
func TestMapEdges(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "map0", Context: json.RawMessage(`{"none":[]}`), Steps: []engine.StepSpec{
		{Name: "each", Handler: "h", ForEach: `$.context.none`},
		{Name: "after", Handler: "h", DependsOn: []string{"each"}},
	}})
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskPending, map[string]engine.StepPhase{"each": engine.StepSucceeded,
		"after": engine.StepEnqueued})
	if string(st.Step("each").Result) != "[]" {
		t.Errorf("empty map's result %s", st.Step("each").Result)
	}
	after := b.claimOne(t, "map0", time.Minute, 5*time.Second)
	if string(after.DependencyResults["each"]) != "[]" {
		t.Errorf("after got %s", after.DependencyResults)
	}

	for _, tc := range []struct {
		context, forEach, want string
	}{
		{`{"x":{"a":1}}`, `$.context.x`, `forEach $."context"."x" gave object, not an array`},
		{`{}`, `$.context.missing`, `forEach $."context"."missing" found nothing`},
		{fmt.Sprintf(`{"big":[%s0]}`, strings.Repeat("0,", engine.MaxMapItems)), `$.context.big`,
			fmt.Sprintf("gave %d items: at most %d are allowed", engine.MaxMapItems+1, engine.MaxMapItems)},
	} {
		id := b.admit(t, engine.TaskSpec{Queue: "map0", Context: json.RawMessage(tc.context), Steps: []engine.StepSpec{
			{Name: "side", Handler: "h"},
			{Name: "each", Handler: "h", ForEach: tc.forEach},
			{Name: "after", Handler: "h", DependsOn: []string{"each"}},
		}})
		st := b.task(t, id)
		wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"side": engine.StepCancelled,
			"each": engine.StepFailed, "after": engine.StepSkipped})
		if msg := st.Step("each").LastErrorMessage; !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q, want %q", tc.forEach, msg, tc.want)
		}
		// A retry would give the same items: refused, with what to do instead.
		if err := b.engine.RetryStep(b.ctx, id, "each"); err == nil ||
			!strings.Contains(err.Error(), "complete or resolve it instead") {
			t.Errorf("retry a failed map step: %v", err)
		}
	}
	b.claimNone(t, "map0")

	// Bad paths are refused at admission, naming the field.
	_, err := b.engine.Admit(b.ctx, engine.TaskSpec{ExternalKey: "bad-map", Queue: "map0", Steps: []engine.StepSpec{
		{Name: "each", Handler: "h", ForEach: `$.context.n > 1`},
	}})
	if err == nil || !strings.Contains(err.Error(), "steps[0].for_each: must be a path to an array") {
		t.Errorf("admit a predicate as forEach: %v", err)
	}
	problems, err := b.engine.ForEachProblems(b.ctx, []string{`$.deps.a.items`, `$.(`, `$.a == 1`})
	if err != nil || problems[0] != "" || !strings.Contains(problems[1], "not a SQL/JSON path") ||
		!strings.Contains(problems[2], "not a predicate") {
		t.Errorf("ForEachProblems: %q, %v", problems, err)
	}
}

// Instances retry on their own; an instance that fails for good fails the task, and stops the others; retrying
// it by hand resumes the task, re-runs the stopped instances and gathers the map in index order.
func TestMapInstanceFailureAndRetry(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "mapf", Context: json.RawMessage(`{"items":["a","b","c"]}`), Steps: []engine.StepSpec{
		{Name: "each", Handler: "h", ForEach: `$.context.items`, Retry: engine.RetryPolicy{MaxAttempts: 2,
			BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, Jitter: engine.NoJitter}},
		{Name: "after", Handler: "h", DependsOn: []string{"each"}},
	}})
	steps, err := b.engine.Claim(b.ctx, "mapf", 100, time.Minute, "w")
	if err != nil || len(steps) != 3 {
		t.Fatalf("claim: %d, %v", len(steps), err)
	}
	// b fails once (retried on its own), a succeeds, c stays running.
	if _, err := b.engine.Fail(b.ctx, steps[1].Lease, engine.Failure{Message: "flaky"}); err != nil {
		t.Fatal(err)
	}
	if err := b.engine.Complete(b.ctx, steps[0].Lease, json.RawMessage(`"A"`)); err != nil {
		t.Fatal(err)
	}
	again := b.claimOne(t, "mapf", time.Minute, 5*time.Second)
	if again.StepName != "each[1]" || again.Attempt != 2 || string(again.Item) != `"b"` {
		t.Fatalf("retry claimed %s attempt %d item %s", again.StepName, again.Attempt, again.Item)
	}
	if _, err := b.engine.Fail(b.ctx, again.Lease, engine.Failure{Message: "broken"}); err != nil {
		t.Fatal(err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"each": engine.StepCancelled,
		"after": engine.StepSkipped})
	if m := st.Step("each").Map; m.Counts[engine.StepFailed] != 1 || m.Counts[engine.StepCancelled] != 1 ||
		m.Counts[engine.StepSucceeded] != 1 {
		t.Errorf("map after the failure: %+v", m)
	}
	if err := b.engine.Complete(b.ctx, steps[2].Lease, json.RawMessage(`"C"`)); err == nil {
		t.Error("an instance of a failed task completed")
	}

	if err := b.engine.RetryStep(b.ctx, id, "each[1]"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"each": engine.StepMapping,
		"after": engine.StepPending})
	ran := b.runAll(t, "mapf", func(s engine.ClaimedStep) json.RawMessage {
		return json.RawMessage(strings.ToUpper(string(s.Item)))
	})
	if !slices.Equal(ran, []string{"each[1]", "each[2]", "after"}) && !slices.Equal(ran, []string{"each[2]", "each[1]", "after"}) {
		t.Errorf("ran %q after the retry", ran)
	}
	st = b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, nil)
	if got := string(st.Step("each").Result); got != `["A", "B", "C"]` {
		t.Errorf("gathered %s", got)
	}
}

// A map of maps' worth: two maps in a row, the second over the first's results, and a map step resolved by hand
// while its instances run (its children go on; the task finishes when the instances do). Cancelling a task
// stops its map.
func TestMapChainsAndActions(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "mapc", Context: json.RawMessage(`{"xs":[1,2]}`), Steps: []engine.StepSpec{
		{Name: "one", Handler: "h", ForEach: `$.context.xs`},
		{Name: "two", Handler: "h", DependsOn: []string{"one"}, ForEach: `$.deps.one`},
	}})
	ran := b.runAll(t, "mapc", func(s engine.ClaimedStep) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`[%s, %s]`, s.Item, s.Item))
	})
	if len(ran) != 4 {
		t.Errorf("ran %q", ran)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, nil)
	if got := string(st.Step("two").Result); got != `[[[1, 1], [1, 1]], [[2, 2], [2, 2]]]` {
		t.Errorf("two gathered %s", got)
	}

	id = b.admit(t, engine.TaskSpec{Queue: "mapc", Context: json.RawMessage(`{"xs":[1,2,3]}`), Steps: []engine.StepSpec{
		{Name: "each", Handler: "h", ForEach: `$.context.xs`},
		{Name: "after", Handler: "h", DependsOn: []string{"each"}},
	}})
	if err := b.engine.ResolveStep(b.ctx, id, "each", "enough"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, b.task(t, id), engine.TaskPending, map[string]engine.StepPhase{"each": engine.StepResolved,
		"after": engine.StepEnqueued})
	if ran := b.runAll(t, "mapc", func(engine.ClaimedStep) json.RawMessage { return nil }); len(ran) != 4 {
		t.Errorf("ran %q", ran)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, map[string]engine.StepPhase{"each": engine.StepResolved})

	id = b.admit(t, engine.TaskSpec{Queue: "mapc", Context: json.RawMessage(`{"xs":[1,2,3]}`), Steps: []engine.StepSpec{
		{Name: "each", Handler: "h", ForEach: `$.context.xs`},
	}})
	if err := b.engine.Cancel(b.ctx, id, "stop"); err != nil {
		t.Fatal(err)
	}
	st = b.task(t, id)
	wantPhase(t, st, engine.TaskCancelled, map[string]engine.StepPhase{"each": engine.StepCancelled})
	if m := st.Step("each").Map; m.Counts[engine.StepCancelled] != 3 {
		t.Errorf("instances of a cancelled map: %+v", m)
	}
	b.claimNone(t, "mapc")
}
