package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
)

// cronCreated is when the test CronTasks were created: the schedules count from there.
var cronCreated = time.Date(2027, 1, 1, 10, 0, 0, 0, time.UTC)

type cronBundle struct {
	r      *CronTaskReconciler
	c      client.Client
	clock  *clocktesting.FakeClock
	events *events.FakeRecorder
}

// newCronBundle stores an hourly CronTask "nightly" (as the apiserver would, with defaults) changed by mutate, and
// the reconciler with a fake clock at its creation time.
func newCronBundle(t *testing.T, mutate func(*taskerv1alpha1.CronTask), objs ...client.Object) *cronBundle {
	t.Helper()
	ct := &taskerv1alpha1.CronTask{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "ns", UID: "ct-uid", Generation: 1,
			CreationTimestamp: metav1.Time{Time: cronCreated}},
		Spec: taskerv1alpha1.CronTaskSpec{Schedule: "@hourly", Task: taskerv1alpha1.CronTaskTaskSpec{
			Labels: map[string]string{"team": "reports"},
			Steps:  []taskerv1alpha1.StepSpec{{Name: "a", Handler: "echo"}},
		}},
	}
	if mutate != nil {
		mutate(ct)
	}
	scheme := testScheme()
	objs = append(objs, ct)
	for _, o := range objs {
		applyCRDDefaults(t, scheme, o)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&taskerv1alpha1.CronTask{}, &taskerv1alpha1.Task{}).Build()
	b := &cronBundle{c: c, clock: clocktesting.NewFakeClock(cronCreated), events: events.NewFakeRecorder(100)}
	b.r = &CronTaskReconciler{Client: c, Scheme: scheme, Recorder: b.events, Clock: b.clock}
	return b
}

func (b *cronBundle) reconcileAt(t *testing.T, at time.Time) ctrl.Result {
	t.Helper()
	b.clock.SetTime(at)
	res, err := b.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "nightly"}})
	if err != nil {
		t.Fatalf("Reconcile at %s: %v", at, err)
	}
	return res
}

func (b *cronBundle) cronTask(t *testing.T) *taskerv1alpha1.CronTask {
	t.Helper()
	var ct taskerv1alpha1.CronTask
	if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "nightly"}, &ct); err != nil {
		t.Fatal(err)
	}
	return &ct
}

func (b *cronBundle) tasks(t *testing.T) map[string]*taskerv1alpha1.Task {
	t.Helper()
	var list taskerv1alpha1.TaskList
	if err := b.c.List(context.Background(), &list, client.InNamespace("ns")); err != nil {
		t.Fatal(err)
	}
	out := map[string]*taskerv1alpha1.Task{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

// drainEvents returns the events recorded so far, one "type reason note" string each.
func (b *cronBundle) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-b.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEventLine(evs []string, reason string) bool {
	for _, e := range evs {
		if strings.Contains(e, " "+reason+" ") {
			return true
		}
	}
	return false
}

// cronTaskOwned is a Task the CronTask created for scheduled, in phase.
func cronTaskOwned(t *testing.T, scheduled time.Time, phase taskerv1alpha1.TaskPhase) *taskerv1alpha1.Task {
	t.Helper()
	ct := &taskerv1alpha1.CronTask{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "ns", UID: "ct-uid"}}
	tk, err := newCronTaskTask(ct, scheduled, testScheme())
	if err != nil {
		t.Fatal(err)
	}
	tk.Status.Phase = phase
	if phase == taskerv1alpha1.TaskSucceeded {
		tk.Status.CompletedAt = &metav1.Time{Time: scheduled.Add(time.Minute)}
	}
	return tk
}

func TestCronTaskCreatesOneTaskPerScheduledTime(t *testing.T) {
	b := newCronBundle(t, func(ct *taskerv1alpha1.CronTask) { ct.Spec.Task.Outputs = map[string]string{"url": "$.steps.a.url"} })
	if res := b.reconcileAt(t, cronCreated.Add(30*time.Minute)); res.RequeueAfter != 30*time.Minute {
		t.Errorf("before the first time: RequeueAfter = %s, want 30m (until 11:00)", res.RequeueAfter)
	}
	if n := len(b.tasks(t)); n != 0 {
		t.Fatalf("%d Tasks before the first scheduled time", n)
	}
	due := cronCreated.Add(time.Hour)
	res := b.reconcileAt(t, due.Add(5*time.Second))
	b.reconcileAt(t, due.Add(10*time.Second)) // again: nothing new
	tasks := b.tasks(t)
	name := "nightly-" + "1798801200" // 2027-01-01T11:00:00Z
	tk := tasks[name]
	if len(tasks) != 1 || tk == nil {
		t.Fatalf("Tasks = %v, want only %s", tasks, name)
	}
	if !metav1.IsControlledBy(tk, b.cronTask(t)) || tk.Labels[taskerv1alpha1.CronTaskLabel] != "nightly" || tk.Labels["team"] != "reports" ||
		tk.Annotations[taskerv1alpha1.ScheduledTimeAnnotation] != "2027-01-01T11:00:00Z" || len(tk.Spec.Steps) != 1 ||
		tk.Spec.Outputs["url"] != "$.steps.a.url" {
		t.Errorf("Task = %+v %+v", tk.ObjectMeta, tk.Spec)
	}
	if res.RequeueAfter != time.Hour-5*time.Second {
		t.Errorf("RequeueAfter = %s, want until 12:00", res.RequeueAfter)
	}
	st := b.cronTask(t).Status
	if st.LastScheduleTime == nil || !st.LastScheduleTime.Equal(&metav1.Time{Time: due}) || st.NextScheduleTime == nil ||
		!st.NextScheduleTime.Time.Equal(due.Add(time.Hour)) || st.ActiveCount != 1 || st.Active[0].Name != name {
		t.Errorf("status = %+v", st)
	}
	if !conditions.IsTrue(st.Conditions, taskerv1alpha1.CronTaskConditionReady) {
		t.Errorf("conditions = %+v, want Ready", st.Conditions)
	}
}

// Down for five hours: one catch-up run, for the last time, and an Event about the others.
func TestCronTaskMissedSchedules(t *testing.T) {
	b := newCronBundle(t, nil)
	b.reconcileAt(t, cronCreated.Add(5*time.Hour+20*time.Minute))
	tasks := b.tasks(t)
	if len(tasks) != 1 || tasks[cronTaskTaskName("nightly", cronCreated.Add(5*time.Hour))] == nil {
		t.Fatalf("Tasks = %v, want only the 15:00 one", tasks)
	}
	if evs := b.drainEvents(); !hasEventLine(evs, "MissedSchedule") {
		t.Errorf("events %v, want MissedSchedule", evs)
	}
}

func TestCronTaskStartingDeadline(t *testing.T) {
	b := newCronBundle(t, func(ct *taskerv1alpha1.CronTask) { ct.Spec.StartingDeadlineSeconds = ptr.To[int64](300) })
	b.reconcileAt(t, cronCreated.Add(time.Hour+6*time.Minute)) // 11:00 is 6 minutes late
	if tasks := b.tasks(t); len(tasks) != 0 {
		t.Fatalf("Tasks = %v, want none past the deadline", tasks)
	}
	if evs := b.drainEvents(); !hasEventLine(evs, "MissedSchedule") {
		t.Errorf("events %v, want MissedSchedule", evs)
	}
	b.reconcileAt(t, cronCreated.Add(2*time.Hour+4*time.Minute)) // 12:00 is 4 minutes late: still runs
	if tasks := b.tasks(t); len(tasks) != 1 || tasks[cronTaskTaskName("nightly", cronCreated.Add(2*time.Hour))] == nil {
		t.Fatalf("Tasks = %v, want the 12:00 one", tasks)
	}
}

// newCronBundleRunning is a CronTask with policy whose 11:00 Task is still running.
func newCronBundleRunning(t *testing.T, policy taskerv1alpha1.ConcurrencyPolicy) (*cronBundle, *taskerv1alpha1.Task) {
	t.Helper()
	running := cronTaskOwned(t, cronCreated.Add(time.Hour), taskerv1alpha1.TaskRunning)
	return newCronBundle(t, func(ct *taskerv1alpha1.CronTask) {
		ct.Spec.ConcurrencyPolicy = policy
		ct.Status.LastScheduleTime = &metav1.Time{Time: cronCreated.Add(time.Hour)}
	}, running), running
}

func TestCronTaskForbid(t *testing.T) {
	b, running := newCronBundleRunning(t, taskerv1alpha1.ConcurrencyForbid)
	b.reconcileAt(t, cronCreated.Add(2*time.Hour+time.Second))
	if tasks := b.tasks(t); len(tasks) != 1 {
		t.Fatalf("Tasks = %v, want only the running one", tasks)
	}
	if evs := b.drainEvents(); !hasEventLine(evs, "AlreadyActive") {
		t.Errorf("events %v, want AlreadyActive", evs)
	}
	// It finishes: the skipped 12:00 run is made up.
	running = b.tasks(t)[running.Name]
	running.Status.Phase = taskerv1alpha1.TaskSucceeded
	if err := b.c.Status().Update(context.Background(), running); err != nil {
		t.Fatal(err)
	}
	b.reconcileAt(t, cronCreated.Add(2*time.Hour+10*time.Minute))
	if tasks := b.tasks(t); len(tasks) != 2 || tasks[cronTaskTaskName("nightly", cronCreated.Add(2*time.Hour))] == nil {
		t.Fatalf("Tasks = %v, want the 12:00 one as well", tasks)
	}
}

func TestCronTaskReplace(t *testing.T) {
	b, running := newCronBundleRunning(t, taskerv1alpha1.ConcurrencyReplace)
	b.reconcileAt(t, cronCreated.Add(2*time.Hour))
	tasks := b.tasks(t)
	if !tasks[running.Name].Spec.Cancel {
		t.Errorf("the running Task was not cancelled")
	}
	next := tasks[cronTaskTaskName("nightly", cronCreated.Add(2*time.Hour))]
	if len(tasks) != 2 || next == nil || next.Spec.Cancel {
		t.Fatalf("Tasks = %v, want the new one, not cancelled", tasks)
	}
}

// A restarted operator (or a new leader) finds the Task of the due time already created, its status write lost:
// it records it and neither creates another nor, with Replace, cancels it.
func TestCronTaskRestartAfterCreate(t *testing.T) {
	due := cronCreated.Add(time.Hour)
	created := cronTaskOwned(t, due, taskerv1alpha1.TaskRunning)
	b := newCronBundle(t, func(ct *taskerv1alpha1.CronTask) { ct.Spec.ConcurrencyPolicy = taskerv1alpha1.ConcurrencyReplace }, created)
	b.reconcileAt(t, due.Add(3*time.Second))
	tasks := b.tasks(t)
	if len(tasks) != 1 || tasks[created.Name].Spec.Cancel {
		t.Fatalf("Tasks = %v (cancel %v), want the one created, running", tasks, tasks[created.Name].Spec.Cancel)
	}
	if st := b.cronTask(t).Status; st.LastScheduleTime == nil || !st.LastScheduleTime.Time.Equal(due) {
		t.Errorf("lastScheduleTime = %v, want %s", st.LastScheduleTime, due)
	}
}

func TestCronTaskHistoryLimits(t *testing.T) {
	var objs []client.Object
	for h := 1; h <= 4; h++ {
		objs = append(objs, cronTaskOwned(t, cronCreated.Add(time.Duration(h)*time.Hour), taskerv1alpha1.TaskSucceeded))
	}
	objs = append(objs, cronTaskOwned(t, cronCreated.Add(5*time.Hour), taskerv1alpha1.TaskFailed),
		cronTaskOwned(t, cronCreated.Add(6*time.Hour), taskerv1alpha1.TaskCancelled))
	foreign := cronTaskOwned(t, cronCreated.Add(30*time.Minute), taskerv1alpha1.TaskSucceeded)
	foreign.OwnerReferences = nil // labelled, but not the CronTask's: left alone
	objs = append(objs, foreign)
	b := newCronBundle(t, func(ct *taskerv1alpha1.CronTask) {
		ct.Spec.Suspend = ptr.To(true)
		ct.Spec.SuccessfulTasksHistoryLimit = ptr.To[int32](2)
	}, objs...) // failedTasksHistoryLimit: the default, 1
	b.reconcileAt(t, cronCreated.Add(7*time.Hour))
	tasks := b.tasks(t)
	for h, keep := range map[int]bool{1: false, 2: false, 3: true, 4: true, 5: false, 6: true} {
		if name := cronTaskTaskName("nightly", cronCreated.Add(time.Duration(h)*time.Hour)); (tasks[name] != nil) != keep {
			t.Errorf("Task of %02d:00 kept: %v, want %v", 10+h, tasks[name] != nil, keep)
		}
	}
	if tasks[foreign.Name] == nil {
		t.Error("a Task the CronTask does not control was deleted")
	}
	if st := b.cronTask(t).Status; st.LastSuccessfulTime == nil || !st.LastSuccessfulTime.Time.Equal(cronCreated.Add(4*time.Hour+time.Minute)) {
		t.Errorf("lastSuccessfulTime = %v, want 14:01", st.LastSuccessfulTime)
	}
}

func TestCronTaskSuspendedAndInvalid(t *testing.T) {
	b := newCronBundle(t, func(ct *taskerv1alpha1.CronTask) { ct.Spec.Suspend = ptr.To(true) })
	b.reconcileAt(t, cronCreated.Add(3*time.Hour))
	st := b.cronTask(t).Status
	if len(b.tasks(t)) != 0 || st.NextScheduleTime != nil {
		t.Errorf("suspended: %d Tasks, next %v", len(b.tasks(t)), st.NextScheduleTime)
	}
	if c := meta.FindStatusCondition(st.Conditions, taskerv1alpha1.CronTaskConditionReady); c == nil || c.Reason != ReasonSuspended {
		t.Errorf("Ready = %+v, want reason Suspended", c)
	}

	b = newCronBundle(t, func(ct *taskerv1alpha1.CronTask) { ct.Spec.TimeZone = ptr.To("Mars/Olympus") })
	if res := b.reconcileAt(t, cronCreated.Add(3*time.Hour)); res.RequeueAfter != 0 {
		t.Errorf("invalid: RequeueAfter = %s, want none (a spec change reconciles)", res.RequeueAfter)
	}
	st = b.cronTask(t).Status
	if len(b.tasks(t)) != 0 || conditions.IsTrue(st.Conditions, taskerv1alpha1.CronTaskConditionReady) ||
		!conditions.IsTrue(st.Conditions, taskerv1alpha1.CronTaskConditionStalled) {
		t.Errorf("invalid time zone: %d Tasks, conditions %+v", len(b.tasks(t)), st.Conditions)
	}
}
