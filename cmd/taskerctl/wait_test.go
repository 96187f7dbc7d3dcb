package main

import (
	"errors"
	"strings"
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

// TestWaitExitCodes: wait against real Tasks exits 0 when the phase is reached, 1 when the Task finished in
// another phase or does not exist, 2 at the timeout.
func TestWaitExitCodes(t *testing.T) {
	ns := env.NewNamespace(t, "wait")
	createTask(t, ns, "done", taskerv1alpha1.TaskSucceeded, nil)
	createTask(t, ns, "broke", taskerv1alpha1.TaskFailed, nil)
	createTask(t, ns, "busy", taskerv1alpha1.TaskRunning, nil)
	createTask(t, ns, "new", "", nil)
	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"done"}, exitReached, "task done is Succeeded\n", ""},
		{[]string{"broke", "--for=phase=failed"}, exitReached, "task broke is Failed\n", ""},
		{[]string{"broke"}, exitOther, "", "error: task broke finished Failed, not Succeeded\n"},
		{[]string{"done", "--for=phase=Running"}, exitOther, "", "error: task done finished Succeeded, not Running\n"},
		{[]string{"gone"}, exitOther, "", `Error from server (NotFound): tasks.tasker.dev "gone" not found` + "\n"},
		{[]string{"busy", "--timeout=50ms"}, exitTimedOut, "",
			"error: timed out after 50ms waiting for task busy to be Succeeded (it is Running)\n"},
		{[]string{"new", "--timeout=50ms"}, exitTimedOut, "",
			"error: timed out after 50ms waiting for task new to be Succeeded (it is not admitted yet)\n"},
		{[]string{"busy", "--for=phase=Done"}, exitOther, "", `error: --for "phase=Done": unknown phase "Done" (one of ` + phaseList() + ")\n"},
	} {
		taskerctl(t, append([]string{"wait", "-n", ns, "--interval=10ms"}, tt.args...)...).want(t, tt.code, tt.stdout, tt.stderr)
	}
}

// TestWaitSeesTheTaskFinish: wait keeps reading the Task until its status changes.
func TestWaitSeesTheTaskFinish(t *testing.T) {
	ns := env.NewNamespace(t, "wait")
	tk := createTask(t, ns, "slow", taskerv1alpha1.TaskRunning, nil)
	done := make(chan result)
	go func() { done <- taskerctl(t, "wait", "slow", "-n", ns, "--interval=10ms") }()
	setPhase(t, tk, taskerv1alpha1.TaskSucceeded)
	(<-done).want(t, exitReached, "task slow is Succeeded\n", "")
}

// TestWatchExitCodes: watch draws the Task's tree and exits 0 when it succeeded, 1 when it failed or was
// cancelled.
func TestWatchExitCodes(t *testing.T) {
	ns := env.NewNamespace(t, "watch")
	for _, tt := range []struct {
		phase  taskerv1alpha1.TaskPhase
		code   int
		stderr string
	}{
		{taskerv1alpha1.TaskSucceeded, exitReached, ""},
		{taskerv1alpha1.TaskFailed, exitOther, "error: task t-failed failed\n"},
		{taskerv1alpha1.TaskCancelled, exitOther, "error: task t-cancelled cancelled\n"},
	} {
		name := "t-" + strings.ToLower(string(tt.phase))
		createTask(t, ns, name, tt.phase, nil)
		r := taskerctl(t, "watch", name, "-n", ns, "--interval=10ms")
		if r.code != tt.code || r.stderr != tt.stderr || !strings.HasPrefix(r.stdout, ns+"/"+name+"  "+string(tt.phase)) {
			t.Errorf("watch of a %s Task: exit %d, stdout:\n%s\nstderr: %q; want exit %d, the tree, stderr %q", tt.phase,
				r.code, r.stdout, r.stderr, tt.code, tt.stderr)
		}
	}
}
