package main

import (
	"errors"
	"testing"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

func TestParseFor(t *testing.T) {
	for in, want := range map[string]taskerv1alpha1.TaskPhase{
		"phase=Succeeded": taskerv1alpha1.TaskSucceeded, "phase=failed": taskerv1alpha1.TaskFailed,
		"phase=RUNNING": taskerv1alpha1.TaskRunning,
	} {
		if got, err := parseFor(in); err != nil || got != want {
			t.Errorf("parseFor(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Succeeded", "state=Succeeded", "phase=Done"} {
		if _, err := parseFor(in); err == nil {
			t.Errorf("parseFor(%q) accepted", in)
		}
	}
}

func TestWaitOutcome(t *testing.T) {
	const (
		pending   = taskerv1alpha1.TaskPending
		running   = taskerv1alpha1.TaskRunning
		succeeded = taskerv1alpha1.TaskSucceeded
		failed    = taskerv1alpha1.TaskFailed
		cancelled = taskerv1alpha1.TaskCancelled
	)
	tests := []struct {
		phase, want taskerv1alpha1.TaskPhase
		done        bool
		code        int
	}{
		{"", succeeded, false, 0},
		{pending, succeeded, false, 0},
		{running, succeeded, false, 0},
		{succeeded, succeeded, true, exitReached},
		{failed, succeeded, true, exitOther},
		{cancelled, succeeded, true, exitOther},
		{failed, failed, true, exitReached},
		{running, running, true, exitReached},
		{succeeded, running, true, exitOther},
	}
	for _, tt := range tests {
		done, err := waitOutcome("t", tt.phase, tt.want)
		if done != tt.done || exitCode(err) != tt.code {
			t.Errorf("phase %q waiting for %q: done %t, exit %d (%v); want done %t, exit %d", tt.phase, tt.want, done,
				exitCode(err), err, tt.done, tt.code)
		}
	}
	if exitCode(errors.New("anything")) != 1 {
		t.Error("a plain error must exit 1")
	}
}
