package engine_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestChainOfTen(t *testing.T) {
	b := setup(t)
	var steps []engine.StepSpec
	for i := range 10 {
		s := engine.StepSpec{Name: fmt.Sprintf("s%d", i), Handler: "add", Inputs: json.RawMessage(`{"n":1}`)}
		if i > 0 {
			s.DependsOn = []string{fmt.Sprintf("s%d", i-1)}
		}
		steps = append(steps, s)
	}
	id := b.admit(t, engine.TaskSpec{Queue: "chain", Context: json.RawMessage(`{"start": 100}`), Steps: steps})

	st := b.task(t, id)
	wantPhase(t, st, engine.TaskPending, map[string]engine.StepPhase{"s0": engine.StepEnqueued, "s1": engine.StepPending})

	// Each step adds its input to its parent's result (or the task context's start).
	claimed := b.drain(t, "chain", id, func(s engine.ClaimedStep) (json.RawMessage, error) {
		var in struct{ N int }
		if err := json.Unmarshal(s.Inputs, &in); err != nil {
			return nil, err
		}
		var prev struct{ Total, Start int }
		if len(s.DependencyResults) == 0 {
			if err := json.Unmarshal(s.TaskContext, &prev); err != nil {
				return nil, err
			}
			prev.Total = prev.Start
		} else {
			for _, r := range s.DependencyResults {
				if err := json.Unmarshal(r, &prev); err != nil {
					return nil, err
				}
			}
		}
		return json.RawMessage(fmt.Sprintf(`{"total": %d}`, prev.Total+in.N)), nil
	})
	if len(claimed) != 10 {
		t.Fatalf("claimed %d steps, want 10", len(claimed))
	}
	for i, c := range claimed {
		if c.StepName != fmt.Sprintf("s%d", i) {
			t.Errorf("claim %d was %s", i, c.StepName)
		}
		if c.Attempt != 1 {
			t.Errorf("%s attempt = %d", c.StepName, c.Attempt)
		}
		if i > 0 {
			if _, ok := c.DependencyResults[fmt.Sprintf("s%d", i-1)]; !ok || len(c.DependencyResults) != 1 {
				t.Errorf("%s dependency results = %v", c.StepName, c.DependencyResults)
			}
		}
	}
	st = b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, nil)
	if st.Counts[engine.StepSucceeded] != 10 || st.Done() != 10 {
		t.Errorf("counts = %v", st.Counts)
	}
	if got := string(st.Step("s9").Result); got != `{"total": 110}` {
		t.Errorf("s9 result = %s", got)
	}
	if st.StartedAt == nil || st.CompletedAt == nil || st.ExpiresAt == nil {
		t.Errorf("timestamps: %+v", st)
	}
	if got := b.taskTransitions(t, id); fmt.Sprint(got) != "[pending>running running>succeeded]" {
		t.Errorf("task transitions = %v", got)
	}
	if n := b.queueLength(t, "chain"); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

func TestDiamond(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "diamond", Steps: []engine.StepSpec{
		{Name: "top", Handler: "h"},
		{Name: "left", Handler: "h", DependsOn: []string{"top"}},
		{Name: "right", Handler: "h", DependsOn: []string{"top"}},
		{Name: "bottom", Handler: "h", DependsOn: []string{"left", "right"}},
	}})
	claimed := b.drain(t, "diamond", id, echo)
	var order []string
	for _, c := range claimed {
		order = append(order, c.StepName)
	}
	if len(order) != 4 || order[0] != "top" || order[3] != "bottom" {
		t.Fatalf("claim order = %v", order)
	}
	bottom := claimed[3]
	if len(bottom.DependencyResults) != 2 || string(bottom.DependencyResults["left"]) != `{"step": "left"}` ||
		string(bottom.DependencyResults["right"]) != `{"step": "right"}` {
		t.Errorf("bottom dependency results = %v", bottom.DependencyResults)
	}
	wantPhase(t, b.task(t, id), engine.TaskSucceeded, nil)
}

func TestFanOutFanIn(t *testing.T) {
	b := setup(t)
	steps := []engine.StepSpec{{Name: "start", Handler: "h"}}
	var names []string
	for i := range 100 {
		name := fmt.Sprintf("w%03d", i)
		names = append(names, name)
		steps = append(steps, engine.StepSpec{Name: name, Handler: "h", DependsOn: []string{"start"}})
	}
	steps = append(steps, engine.StepSpec{Name: "join", Handler: "h", DependsOn: names})
	id := b.admit(t, engine.TaskSpec{Queue: "fan", Steps: steps})

	claimed := b.drain(t, "fan", id, echo)
	if len(claimed) != 102 {
		t.Fatalf("claimed %d steps, want 102", len(claimed))
	}
	join := claimed[len(claimed)-1]
	if join.StepName != "join" {
		t.Fatalf("last claim = %s", join.StepName)
	}
	var got []string
	for k, v := range join.DependencyResults {
		got = append(got, k)
		if string(v) != fmt.Sprintf(`{"step": %q}`, k) {
			t.Errorf("result of %s = %s", k, v)
		}
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Errorf("join got results of %d steps", len(got))
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskSucceeded, nil)
	if st.Counts[engine.StepSucceeded] != 102 {
		t.Errorf("counts = %v", st.Counts)
	}
	// The fan-in step was enqueued exactly once.
	var enq int
	for _, tr := range b.stepTransitions(t, id) {
		if tr.Step == "join" && tr.To == "enqueued" {
			enq++
		}
	}
	if enq != 1 {
		t.Errorf("join enqueued %d times", enq)
	}
}
