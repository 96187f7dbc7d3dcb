package crontask

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
)

// waitNext waits until the CronTask's status announces want as its next scheduled time.
func waitNext(t *testing.T, ct *taskerv1alpha1.CronTask, want time.Time) {
	t.Helper()
	waitFor(t, 20*time.Second, "nextScheduleTime "+want.UTC().Format(time.RFC3339), func() (bool, error) {
		next := getCronTask(t, ct).Status.NextScheduleTime
		return next != nil && next.Time.Equal(want), fmt.Errorf("nextScheduleTime %v", next)
	})
}

// sunday is the nth Sunday of the month, at midnight in loc.
func sunday(year int, month time.Month, n int, loc *time.Location) time.Time {
	d := time.Date(year, month, 1, 0, 0, 0, 0, loc)
	for d.Weekday() != time.Sunday {
		d = d.AddDate(0, 0, 1)
	}
	return d.AddDate(0, 0, 7*(n-1))
}

// The schedule is read in spec.timeZone and keeps its wall-clock time across DST changes; around them it does
// what Kubernetes CronJob does (both use robfig/cron): a time that does not exist that day is skipped, a time that
// exists twice runs twice, each run its own Task.
func TestDSTInTheTimeZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	year := time.Now().Year() + 1
	nyCron := func(schedule string) *taskerv1alpha1.CronTask {
		return newCronTask(t, schedule, func(ct *taskerv1alpha1.CronTask) {
			ct.Spec.TimeZone = ptr.To("America/New_York")
			ct.Spec.StartingDeadlineSeconds = ptr.To[int64](120) // no catch-up of the year before the test's dates
		})
	}

	t.Run("02:30 is skipped when the clocks spring forward", func(t *testing.T) {
		ct := nyCron("30 2 * * *")
		spring := sunday(year, time.March, 2, ny)
		at(t, ct, spring.Add(-12*time.Hour)) // Saturday noon
		monday := time.Date(year, time.March, spring.Day()+1, 2, 30, 0, 0, ny)
		if _, offset := monday.Zone(); offset != -4*3600 {
			t.Fatalf("%s is not in daylight saving time", monday)
		}
		waitNext(t, ct, monday)
		at(t, ct, monday.Add(5*time.Second))
		tasks := waitTasks(t, ct, taskName(ct, monday))
		if got := tasks[taskName(ct, monday)].Annotations[taskerv1alpha1.ScheduledTimeAnnotation]; got != monday.UTC().Format(time.RFC3339) {
			t.Errorf("scheduled-time annotation %q, want %s (02:30 EDT)", got, monday.UTC().Format(time.RFC3339))
		}
		waitNext(t, ct, monday.AddDate(0, 0, 1))
	})

	t.Run("01:30 runs twice when the clocks fall back", func(t *testing.T) {
		ct := nyCron("30 1 * * *")
		fall := sunday(year, time.November, 1, ny)
		at(t, ct, fall.Add(-12*time.Hour))
		edt := time.Date(year, time.November, fall.Day(), 5, 30, 0, 0, time.UTC) // 01:30 EDT
		est := edt.Add(time.Hour)                                                // 01:30 EST
		waitNext(t, ct, edt)
		at(t, ct, edt.Add(5*time.Second))
		waitTasks(t, ct, taskName(ct, edt))
		waitNext(t, ct, est)
		at(t, ct, est.Add(5*time.Second))
		waitTasks(t, ct, taskName(ct, edt), taskName(ct, est))
		waitNext(t, ct, est.AddDate(0, 0, 1))
	})
}

// Forbid skips a run while the Task of an earlier one is unfinished, and makes it up when that Task finishes.
func TestForbidWithARunningTask(t *testing.T) {
	ct := newCronTask(t, "@hourly", func(ct *taskerv1alpha1.CronTask) { ct.Spec.ConcurrencyPolicy = taskerv1alpha1.ConcurrencyForbid })
	h := nextHour()
	first, second := taskName(ct, h), taskName(ct, h.Add(time.Hour))
	at(t, ct, h.Add(5*time.Second))
	tasks := waitTasks(t, ct, first)
	if !metav1.IsControlledBy(tasks[first], getCronTask(t, ct)) {
		t.Errorf("Task %s is not controlled by the CronTask: %+v", first, tasks[first].OwnerReferences)
	}

	at(t, ct, h.Add(time.Hour+5*time.Second))
	waitEvent(t, ct, "AlreadyActive")
	if tasks := tasksOf(t, ct); len(tasks) != 1 {
		t.Fatalf("Tasks %v: a second one was created while the first ran", tasks)
	}
	if st := getCronTask(t, ct).Status; st.ActiveCount != 1 || st.Active[0].Name != first {
		t.Errorf("active = %+v, want %s", st.Active, first)
	}

	finishStep(t, ct, first, true)
	waitTasks(t, ct, first, second)
	waitFor(t, 20*time.Second, "lastSuccessfulTime", func() (bool, error) {
		st := getCronTask(t, ct).Status
		return st.LastSuccessfulTime != nil && st.LastScheduleTime.Time.Equal(h.Add(time.Hour)), fmt.Errorf("status %+v", st)
	})
}

// Replace cancels the running Task in the engine, and creates the next.
func TestReplaceCancelsTheRunningTask(t *testing.T) {
	ct := newCronTask(t, "@hourly", func(ct *taskerv1alpha1.CronTask) { ct.Spec.ConcurrencyPolicy = taskerv1alpha1.ConcurrencyReplace })
	h := nextHour()
	first, second := taskName(ct, h), taskName(ct, h.Add(time.Hour))
	at(t, ct, h.Add(5*time.Second))
	waitTasks(t, ct, first)
	waitAdmitted(t, ct.Namespace, first) // in the engine: what Replace must cancel there

	at(t, ct, h.Add(time.Hour+5*time.Second))
	waitTasks(t, ct, first, second)
	if cancelled := waitPhase(t, ct.Namespace, first, taskerv1alpha1.TaskCancelled); !cancelled.Spec.Cancel {
		t.Errorf("Task %s is Cancelled without spec.cancel", first)
	}
	if next := waitAdmitted(t, ct.Namespace, second); next.Spec.Cancel || next.Status.Phase == taskerv1alpha1.TaskCancelled {
		t.Errorf("the new Task %s was cancelled too", second)
	}
}

// The history limits keep the newest succeeded and failed Tasks.
func TestHistoryLimits(t *testing.T) {
	ct := newCronTask(t, "@hourly", func(ct *taskerv1alpha1.CronTask) {
		ct.Spec.SuccessfulTasksHistoryLimit = ptr.To[int32](1)
		ct.Spec.FailedTasksHistoryLimit = ptr.To[int32](1)
	})
	h := nextHour()
	for i, succeed := range []bool{true, true, false, false} {
		scheduled := h.Add(time.Duration(i) * time.Hour)
		at(t, ct, scheduled.Add(5*time.Second))
		waitFor(t, 20*time.Second, "the Task of "+scheduled.Format(time.RFC3339), func() (bool, error) {
			return tasksOf(t, ct)[taskName(ct, scheduled)] != nil, nil
		})
		finishStep(t, ct, taskName(ct, scheduled), succeed)
	}
	waitTasks(t, ct, taskName(ct, h.Add(time.Hour)), taskName(ct, h.Add(3*time.Hour)))
}

// An operator that stopped after creating a scheduled time's Task, before recording it in status, is followed by
// one (a restart or a new leader) that finds the Task there: it records it, and neither creates another nor, under
// Replace, cancels it. Several reconcilers racing over the same due time create one Task too.
func TestRestartInTheMiddleOfASchedule(t *testing.T) {
	ct := newCronTask(t, "@hourly", func(ct *taskerv1alpha1.CronTask) { ct.Spec.ConcurrencyPolicy = taskerv1alpha1.ConcurrencyReplace })
	ct = getCronTask(t, ct)
	h := nextHour()
	// What the stopped operator left: the Task of h, its creation not in the CronTask's status.
	left := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: taskName(ct, h), Namespace: ct.Namespace,
			Labels:          map[string]string{taskerv1alpha1.CronTaskLabel: ct.Name},
			Annotations:     map[string]string{taskerv1alpha1.ScheduledTimeAnnotation: h.UTC().Format(time.RFC3339)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ct, taskerv1alpha1.GroupVersion.WithKind("CronTask"))}},
		Spec: taskerv1alpha1.TaskSpec{Steps: ct.Spec.Task.Steps},
	}
	if err := env.Client.Create(context.Background(), left); err != nil {
		t.Fatal(err)
	}
	at(t, ct, h.Add(5*time.Second))
	waitFor(t, 20*time.Second, "lastScheduleTime", func() (bool, error) {
		last := getCronTask(t, ct).Status.LastScheduleTime
		return last != nil && last.Time.Equal(h), fmt.Errorf("lastScheduleTime %v", last)
	})
	tasks := waitTasks(t, ct, left.Name)
	if tasks[left.Name].Spec.Cancel {
		t.Error("the Task the stopped operator created was cancelled")
	}

	// The next hour, the operator's reconciler and four fresh ones (uncached client, nothing in memory) race.
	next := h.Add(time.Hour)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(ct)}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	clock.SetTime(next.Add(5 * time.Second))
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leader := &controllers.CronTaskReconciler{Client: env.Client, Scheme: env.Client.Scheme(), Clock: clock}
			if _, err := leader.Reconcile(context.Background(), req); err != nil && !apierrors.IsConflict(err) {
				errs <- err
			}
		}()
	}
	at(t, ct, next.Add(5*time.Second))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a racing reconciler: %v", err)
	}
	waitTasks(t, ct, left.Name, taskName(ct, next))
	waitPhase(t, ct.Namespace, left.Name, taskerv1alpha1.TaskCancelled) // replaced by the next hour's, once
	if tk := tasksOf(t, ct)[taskName(ct, next)]; tk.Spec.Cancel {
		t.Error("the next hour's Task was cancelled by a racing reconciler")
	}
}

// kubectl shows a CronTask by its short name with CronJob's columns.
func TestKubectlColumns(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatal("kubectl is needed on PATH (the README lists it as a prerequisite)")
	}
	ct := newCronTask(t, "@hourly", nil)
	h := nextHour()
	at(t, ct, h.Add(5*time.Second))
	waitTasks(t, ct, taskName(ct, h))
	waitNext(t, ct, h.Add(time.Hour))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "--cache-dir", t.TempDir(), "get", "ctk", "-n", ct.Namespace).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get ctk: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0]), []string{"NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE"}) {
		t.Fatalf("kubectl get ctk:\n%s", out)
	}
	row := strings.Fields(lines[1])
	if len(row) != 7 || row[0] != "ct" || row[1] != "@hourly" || row[2] != "false" || row[3] != "1" ||
		row[5] != h.Add(time.Hour).UTC().Format(time.RFC3339) {
		t.Errorf("kubectl get ctk row %q, want ct @hourly false 1 <last> %s <age>", lines[1], h.Add(time.Hour).UTC().Format(time.RFC3339))
	}
}
