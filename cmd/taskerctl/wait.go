package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

var phases = []taskerv1alpha1.TaskPhase{taskerv1alpha1.TaskPending, taskerv1alpha1.TaskRunning,
	taskerv1alpha1.TaskSucceeded, taskerv1alpha1.TaskFailed, taskerv1alpha1.TaskCancelled}

// parseFor reads --for: "phase=<Phase>" (the phase's case does not matter).
func parseFor(s string) (taskerv1alpha1.TaskPhase, error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key != "phase" {
		return "", fmt.Errorf("--for %q: want phase=<%s>", s, phaseList())
	}
	for _, p := range phases {
		if strings.EqualFold(value, string(p)) {
			return p, nil
		}
	}
	return "", fmt.Errorf("--for %q: unknown phase %q (one of %s)", s, value, phaseList())
}

func phaseList() string {
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = string(p)
	}
	return strings.Join(names, "|")
}

// finished tells whether a Task in phase has ended: Succeeded and Cancelled are final; Failed ends a wait too
// (an operator may still retry a failed step and resume it, as argo wait also treats a failed workflow).
func finished(phase taskerv1alpha1.TaskPhase) bool {
	switch phase {
	case taskerv1alpha1.TaskSucceeded, taskerv1alpha1.TaskFailed, taskerv1alpha1.TaskCancelled:
		return true
	}
	return false
}

// waitOutcome decides a wait for want when the Task is in phase: done, and with which error (nil: reached).
func waitOutcome(name string, phase, want taskerv1alpha1.TaskPhase) (bool, error) {
	switch {
	case phase == want:
		return true, nil
	case finished(phase):
		return true, &exitError{code: exitOther, msg: fmt.Sprintf("task %s finished %s, not %s", name, phase, want)}
	}
	return false, nil
}

func waitCmd(g *globals) *cobra.Command {
	var (
		forCond  string
		timeout  time.Duration
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:     "wait NAME --for=phase=<Phase>",
		Short:   "Wait for a Task's phase: exit 0 when reached, 1 when it finished otherwise, 2 at the timeout",
		Example: "  taskerctl wait nightly-report --for=phase=Succeeded --timeout=10m",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want, err := parseFor(forCond)
			if err != nil {
				return err
			}
			c, ns, err := g.client()
			if err != nil {
				return err
			}
			name := args[0]
			var deadline <-chan time.Time
			if timeout > 0 {
				t := time.NewTimer(timeout)
				defer t.Stop()
				deadline = t.C
			}
			for {
				tk, err := g.getTask(cmd.Context(), c, ns, name)
				if err != nil {
					return err
				}
				if done, err := waitOutcome(name, tk.Status.Phase, want); done {
					if err == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "task %s is %s\n", name, want)
					}
					return err
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-deadline:
					return &exitError{code: exitTimedOut,
						msg: fmt.Sprintf("timed out after %s waiting for task %s to be %s (it is %s)", timeout, name, want,
							phaseOrNone(tk.Status.Phase))}
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().StringVar(&forCond, "for", "phase=Succeeded", "The condition: phase=<"+phaseList()+">.")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "Give up after this long (exit 2); 0 waits forever.")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "Time between reads of the Task.")
	return cmd
}

func phaseOrNone(p taskerv1alpha1.TaskPhase) string {
	if p == "" {
		return "not admitted yet"
	}
	return string(p)
}
