package controllers

import (
	"fmt"
	"testing"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// A map step is one summary with its instances' counts, however many instances; counts and progress are over
// the spec's steps; more than MaxStepSummaries steps keep only counts for the rest.
func TestApplyEngineState(t *testing.T) {
	st := &engine.TaskState{ID: 7, Phase: engine.TaskRunning, Counts: map[engine.StepPhase]int{
		engine.StepSucceeded: 1, engine.StepMapping: 1, engine.StepPending: 58}}
	st.Steps = append(st.Steps,
		engine.StepState{Name: "list", Phase: engine.StepSucceeded},
		engine.StepState{Name: "each", Phase: engine.StepMapping, Map: &engine.MapState{Items: 10000,
			Counts: map[engine.StepPhase]int{engine.StepSucceeded: 9000, engine.StepRunning: 8, engine.StepEnqueued: 992}}})
	for i := range 58 {
		st.Steps = append(st.Steps, engine.StepState{Name: fmt.Sprintf("s%d", i), Phase: engine.StepPending})
	}
	var status taskerv1alpha1.TaskStatus
	applyEngineState(&status, st)
	if status.Progress != "1/60" || status.StepCounts.Total != 60 || status.StepCounts.Mapping != 1 ||
		status.StepCounts.Pending != 58 {
		t.Errorf("progress %s, counts %+v", status.Progress, status.StepCounts)
	}
	if len(status.Steps) != taskerv1alpha1.MaxStepSummaries {
		t.Errorf("%d summaries", len(status.Steps))
	}
	want := taskerv1alpha1.StepCounts{Total: 10000, Succeeded: 9000, Running: 8, Enqueued: 992}
	if m := status.Steps[1].Map; status.Steps[1].State != "mapping" || m == nil || *m != want {
		t.Errorf("map summary %s %+v, want %+v", status.Steps[1].State, m, want)
	}
	if status.Steps[0].Map != nil {
		t.Errorf("an ordinary step has map counts %+v", status.Steps[0].Map)
	}
}
