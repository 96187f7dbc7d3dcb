package stepcounts

import (
	"testing"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		c    taskerv1alpha1.StepCounts
		want string
	}{
		{taskerv1alpha1.StepCounts{Total: 0}, "0 items"},
		{taskerv1alpha1.StepCounts{Total: 1, Enqueued: 1}, "1 item: 1 enqueued"},
		{Of(10000, map[engine.StepPhase]int{engine.StepSucceeded: 9000, engine.StepRunning: 8, engine.StepEnqueued: 990,
			engine.StepFailed: 2}), "10000 items: 9000 succeeded, 8 running, 990 enqueued, 2 failed"},
	} {
		if got := Line(tc.c); got != tc.want {
			t.Errorf("Line(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
	if Map(nil) != nil {
		t.Error("Map(nil) is not nil")
	}
	if m := Map(&engine.MapState{Items: 3, Counts: map[engine.StepPhase]int{engine.StepCancelled: 3}}); m.Total != 3 || m.Cancelled != 3 {
		t.Errorf("Map: %+v", m)
	}
}
