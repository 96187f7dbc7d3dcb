package engine_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestHistoryTellsEveryTransition(t *testing.T) {
	b := setup(t)
	id := b.admit(t, engine.TaskSpec{Queue: "hist", Steps: []engine.StepSpec{
		{Name: "flaky", Handler: "h", Retry: engine.RetryPolicy{MaxAttempts: 2, BackoffBase: time.Millisecond,
			Jitter: engine.NoJitter}},
		{Name: "after", Handler: "h", DependsOn: []string{"flaky"}},
	}})
	first := b.claimOne(t, "hist", 30*time.Second, 5*time.Second)
	if _, err := b.engine.Fail(b.ctx, first.Lease, engine.Failure{Message: "disk full"}); err != nil {
		t.Fatal(err)
	}
	second := b.claimOne(t, "hist", 30*time.Second, 5*time.Second)
	if err := b.engine.Complete(b.ctx, second.Lease, nil); err != nil {
		t.Fatal(err)
	}
	after := b.claimOne(t, "hist", 30*time.Second, 5*time.Second)
	if err := b.engine.Complete(b.ctx, after.Lease, nil); err != nil {
		t.Fatal(err)
	}

	all, err := b.engine.History(b.ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range all {
		got = append(got, fmt.Sprintf("%s:%s>%s:%d:%s:%s:%s", h.Step, h.From, h.To, h.Attempt, h.Worker, h.Reason, h.Error))
	}
	want := []string{
		"flaky:pending>enqueued:0::admitted:",
		"flaky:enqueued>running:1:w1:claimed:",
		":pending>running:0::first step claimed:",
		"flaky:running>retrying:1:w1:failed:disk full",
		"flaky:retrying>running:2:w1:claimed:",
		"flaky:running>succeeded:2:w1:completed:",
		"after:pending>enqueued:0::dependencies finished:",
		"after:enqueued>running:1:w1:claimed:",
		"after:running>succeeded:1:w1:completed:",
		":running>succeeded:0::all steps finished:",
	}
	if fmtSlice(got) != fmtSlice(want) {
		t.Errorf("history\n%s\nwant\n%s", fmtSlice(got), fmtSlice(want))
	}
	for i := 1; i < len(all); i++ {
		if all[i].At.Before(all[i-1].At) {
			t.Errorf("entry %d is older than entry %d", i, i-1)
		}
	}

	one, err := b.engine.History(b.ctx, id, "after")
	if err != nil || len(one) != 3 || one[0].Step != "after" {
		t.Fatalf("history of step after: %+v, %v", one, err)
	}
	if _, err := b.engine.History(b.ctx, id, "nope"); !errors.Is(err, engine.ErrStepNotFound) {
		t.Errorf("unknown step: %v", err)
	}
	if _, err := b.engine.History(b.ctx, id+1000, ""); !errors.Is(err, engine.ErrTaskNotFound) {
		t.Errorf("unknown task: %v", err)
	}
}
