package engine_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestStepInputsAreTheAdmittedOnes(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "inputs", Steps: []engine.StepSpec{
		{Name: "with", Handler: "h", Inputs: json.RawMessage(`{"table": "orders", "limit": 3}`)},
		{Name: "without", Handler: "h"},
	}})
	got, err := b.engine.StepInputs(b.ctx, id, "with")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(got, &v); err != nil || v["table"] != "orders" || v["limit"] != float64(3) {
		t.Errorf("inputs of 'with': %s (%v)", got, err)
	}
	got, err = b.engine.StepInputs(b.ctx, id, "without")
	if err != nil || (len(got) != 0 && string(got) != "null") {
		t.Errorf("inputs of 'without': %q, %v; want none", got, err)
	}
	if _, err := b.engine.StepInputs(b.ctx, id, "nope"); !errors.Is(err, engine.ErrStepNotFound) {
		t.Errorf("unknown step: %v, want ErrStepNotFound", err)
	}
}
