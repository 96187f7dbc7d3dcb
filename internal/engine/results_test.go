package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// bigResult is a JSON string of n bytes in all.
func bigResult(n int) json.RawMessage {
	return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`)
}

// The database enforces the result limit for workers that do not check it (any language): a result over
// tasker.max_result_bytes() reported alone fails its step for good with the reason; in a batch, the call is refused
// whole (54000) and nothing changes.
func TestDatabaseRefusesAnOversizedResult(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "big", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}, {Name: "b", Handler: "h"}}})
	steps, err := b.engine.Claim(b.ctx, "big", 2, time.Minute, "w")
	if err != nil || len(steps) != 2 {
		t.Fatalf("claim: %d, %v", len(steps), err)
	}
	huge := bigResult(1<<20 + 1)
	rows, err := b.pool.Query(b.ctx, `SELECT * FROM tasker.complete_many($1::uuid[], $2::jsonb[])`,
		[]string{steps[0].Lease.String(), steps[1].Lease.String()}, []string{`{"ok":true}`, string(huge)})
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	if err == nil || !strings.Contains(err.Error(), "results[2]: the result is 1048577 bytes of JSON") ||
		!strings.Contains(err.Error(), "54000") {
		t.Fatalf("batch with an oversized result: %v, want 54000 naming results[2]", err)
	}
	wantPhase(t, b.task(t, id), engine.TaskRunning, map[string]engine.StepPhase{"a": engine.StepRunning, "b": engine.StepRunning})

	// Reported alone, it fails its step (and, permanently, its task); the other report goes through.
	if err := b.engine.Complete(b.ctx, steps[0].Lease, json.RawMessage(`{"ok":true}`)); err != nil {
		t.Fatalf("complete a: %v", err)
	}
	var ok bool
	var status string
	if err := b.pool.QueryRow(b.ctx, `SELECT ok, status FROM tasker.complete($1::uuid, $2::jsonb)`,
		steps[1].Lease.String(), string(huge)).Scan(&ok, &status); err != nil || ok || status != "result_refused" {
		t.Fatalf("oversized result alone: ok %v status %q, %v; want false, result_refused", ok, status, err)
	}
	st := b.task(t, id)
	wantPhase(t, st, engine.TaskFailed, map[string]engine.StepPhase{"a": engine.StepSucceeded, "b": engine.StepFailed})
	if msg := st.Step("b").LastErrorMessage; msg != "the result is 1048577 bytes of JSON, more than the limit of 1048576" {
		t.Errorf("b's error %q", msg)
	}
}

// A result that would bring what a child receives from its parents over tasker.max_dependency_results_bytes()
// (64 MiB) is refused, so that the child's claims cannot fail for every worker of its queue.
func TestDatabaseBoundsWhatAChildReceives(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 68 MB of results")
	}
	b := setup(t)
	const parents = 68 // 67 results of 1,000,002 bytes fit in 64 MiB (67,108,864); the 68th does not
	spec := engine.TaskSpec{Queue: "fanin", Steps: []engine.StepSpec{{Name: "child", Handler: "h"}}}
	for i := range parents {
		name := fmt.Sprintf("p%02d", i)
		spec.Steps = append(spec.Steps, engine.StepSpec{Name: name, Handler: "h"})
		spec.Steps[0].DependsOn = append(spec.Steps[0].DependsOn, name)
	}
	id := b.admit(t, spec)
	var claimed []engine.ClaimedStep
	for len(claimed) < parents {
		steps, err := b.engine.Claim(b.ctx, "fanin", parents, time.Minute, "w")
		if err != nil || len(steps) == 0 {
			t.Fatalf("claim: %d, %v", len(steps), err)
		}
		claimed = append(claimed, steps...)
	}
	result := bigResult(1_000_002)
	for i, c := range claimed {
		err := b.engine.Complete(b.ctx, c.Lease, result)
		if i < parents-1 {
			if err != nil {
				t.Fatalf("complete parent %d: %v", i+1, err)
			}
			continue
		}
		if !errors.Is(err, engine.ErrResultRefused) {
			t.Fatalf("the %dth parent's result: %v, want ErrResultRefused", i+1, err)
		}
		st := b.task(t, id)
		if st.Phase != engine.TaskFailed {
			t.Errorf("task %s, want failed", st.Phase)
		}
		want := fmt.Sprintf("would bring the results handed to step child to %d bytes", parents*1_000_002)
		if msg := st.Step(c.StepName).LastErrorMessage; !strings.Contains(msg, want) {
			t.Errorf("%s's error %q, want it to contain %q", c.StepName, msg, want)
		}
	}
}
