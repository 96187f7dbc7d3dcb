// Package crontask tests the CronTask controller end to end: a real kube-apiserver (envtest), a real PostgreSQL
// and the operator as it ships (operator.Setup), with the schedule read from a fake clock the tests step, so no
// test waits for a scheduled time. Tests share the clock: they do not run in parallel.
package crontask

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jackc/pgx/v5/pgxpool"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

var (
	env *testenv.Env
	// clock is the operator's CronTask clock. It starts at the real time: the apiserver stamps CronTasks'
	// creation with the real time, and schedules count from there.
	clock  = clocktesting.NewFakeClock(time.Now())
	dbPool *pgxpool.Pool // the tests' own pool, standing in for workers
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	e, stop, err := testenv.StartWithDatabase("crontask",
		testenv.Options{Operator: operator.Options{UpkeepInterval: time.Second, Clock: clock}},
		store.Options{MaxConns: 10}, engine.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crontask:", err)
		return 1
	}
	defer stop()
	env, dbPool = e.Env, e.Pool
	return m.Run()
}

var waitFor = testenv.WaitFor

// newCronTask creates a CronTask "ct" with one echo step in a new namespace, changed by mutate. It first sets the
// clock back to the real time, at which the apiserver stamps the CronTask's creation.
func newCronTask(t *testing.T, schedule string, mutate func(*taskerv1alpha1.CronTask)) *taskerv1alpha1.CronTask {
	t.Helper()
	clock.SetTime(time.Now())
	ct := &taskerv1alpha1.CronTask{
		ObjectMeta: metav1.ObjectMeta{Name: "ct", Namespace: env.NewNamespace(t, "ctk")},
		Spec: taskerv1alpha1.CronTaskSpec{Schedule: schedule, Task: taskerv1alpha1.CronTaskTaskSpec{
			Steps: []taskerv1alpha1.StepSpec{{Name: "work", Handler: "echo"}},
		}},
	}
	if mutate != nil {
		mutate(ct)
	}
	if err := env.Client.Create(context.Background(), ct); err != nil {
		t.Fatalf("create CronTask: %v", err)
	}
	return ct
}

// at steps the clock to at and wakes the CronTask, as the requeue at its next scheduled time would: the
// controller-runtime queue waits in real time, which the fake clock does not move.
func at(t *testing.T, ct *taskerv1alpha1.CronTask, when time.Time) {
	t.Helper()
	clock.SetTime(when)
	latest := getCronTask(t, ct)
	patch := client.MergeFrom(latest.DeepCopy())
	if latest.Annotations == nil {
		latest.Annotations = map[string]string{}
	}
	latest.Annotations["test/now"] = when.UTC().Format(time.RFC3339Nano)
	if err := env.Client.Patch(context.Background(), latest, patch); err != nil {
		t.Fatalf("wake CronTask: %v", err)
	}
}

func getCronTask(t *testing.T, ct *taskerv1alpha1.CronTask) *taskerv1alpha1.CronTask {
	t.Helper()
	var out taskerv1alpha1.CronTask
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(ct), &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// tasksOf lists the CronTask's Tasks by name.
func tasksOf(t *testing.T, ct *taskerv1alpha1.CronTask) map[string]*taskerv1alpha1.Task {
	t.Helper()
	var list taskerv1alpha1.TaskList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ct.Namespace),
		client.MatchingLabels{taskerv1alpha1.CronTaskLabel: ct.Name}); err != nil {
		t.Fatal(err)
	}
	out := map[string]*taskerv1alpha1.Task{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

// taskName is the name of the Task the CronTask creates for scheduled.
func taskName(ct *taskerv1alpha1.CronTask, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", ct.Name, scheduled.Unix())
}

// waitTasks waits until the CronTask has exactly the Tasks named (not being deleted).
func waitTasks(t *testing.T, ct *taskerv1alpha1.CronTask, names ...string) map[string]*taskerv1alpha1.Task {
	t.Helper()
	var tasks map[string]*taskerv1alpha1.Task
	waitFor(t, 20*time.Second, fmt.Sprintf("Tasks %v", names), func() (bool, error) {
		tasks = tasksOf(t, ct)
		live := 0
		for _, tk := range tasks {
			if tk.DeletionTimestamp == nil {
				live++
			}
		}
		for _, n := range names {
			if tasks[n] == nil || tasks[n].DeletionTimestamp != nil {
				return false, fmt.Errorf("have %d Tasks, not %s", len(tasks), n)
			}
		}
		return live == len(names), fmt.Errorf("have %d live Tasks", live)
	})
	return tasks
}

// waitPhase waits until the Task reaches phase.
func waitPhase(t *testing.T, ns, name string, phase taskerv1alpha1.TaskPhase) *taskerv1alpha1.Task {
	t.Helper()
	return waitTask(t, ns, name, fmt.Sprintf("to be %s", phase), func(tk *taskerv1alpha1.Task) bool { return tk.Status.Phase == phase })
}

// waitAdmitted waits until the Task is in the engine (it has a task id).
func waitAdmitted(t *testing.T, ns, name string) *taskerv1alpha1.Task {
	t.Helper()
	return waitTask(t, ns, name, "to be admitted", func(tk *taskerv1alpha1.Task) bool { return tk.Status.TaskID != 0 })
}

func waitTask(t *testing.T, ns, name, what string, done func(*taskerv1alpha1.Task) bool) *taskerv1alpha1.Task {
	t.Helper()
	var tk taskerv1alpha1.Task
	waitFor(t, 30*time.Second, "Task "+name+" "+what, func() (bool, error) {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &tk); err != nil {
			return false, err
		}
		return done(&tk), fmt.Errorf("phase %q, conditions %v", tk.Status.Phase, tk.Status.Conditions)
	})
	return &tk
}

// finishStep plays a worker of the CronTask's namespace: it claims the one enqueued step and completes it, or
// fails it for good, and waits for its Task to finish.
func finishStep(t *testing.T, ct *taskerv1alpha1.CronTask, task string, succeed bool) {
	t.Helper()
	eng := engine.New(dbPool, engine.Options{})
	queue := queuescope.Scope{}.DatabaseQueue(ct.Namespace, "default")
	ctx := context.Background()
	waitFor(t, 20*time.Second, "a step to claim on "+queue, func() (bool, error) {
		steps, err := eng.Claim(ctx, queue, 1, 30*time.Second, "crontask-test")
		if err != nil || len(steps) == 0 {
			return false, err
		}
		if succeed {
			return true, eng.Complete(ctx, steps[0].Lease, json.RawMessage(`{"ok":true}`))
		}
		_, err = eng.Fail(ctx, steps[0].Lease, engine.Failure{Message: "failed on purpose", Permanent: true})
		return true, err
	})
	want := taskerv1alpha1.TaskSucceeded
	if !succeed {
		want = taskerv1alpha1.TaskFailed
	}
	waitPhase(t, ct.Namespace, task, want)
}

// waitEvent waits for an Event of the CronTask with reason.
func waitEvent(t *testing.T, ct *taskerv1alpha1.CronTask, reason string) {
	t.Helper()
	waitFor(t, 20*time.Second, "Event "+reason, func() (bool, error) {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ct.Namespace)); err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "CronTask" && e.Regarding.Name == ct.Name && e.Reason == reason {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d events", len(list.Items))
	})
}

// nextHour is the first whole hour after the real time, so the CronTasks (created at the real time) miss none of
// the hourly times the tests step to.
func nextHour() time.Time { return time.Now().UTC().Truncate(time.Hour).Add(time.Hour) }
