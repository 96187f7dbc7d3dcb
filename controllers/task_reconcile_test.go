package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// fakeEngine is an in-memory TaskEngine: tasks by id and key, the calls made, and a switch that makes every call
// fail as an unreachable database does.
type fakeEngine struct {
	tasks map[int64]*engine.TaskState
	next  int64
	down  bool
	calls []string
	// actionErr, when set, is what the next action (retry, resolve, complete) returns.
	actionErr error
	// lastAction is the action id (engine.WithAction) the last action was called with.
	lastAction string
	// admitted are the specs admitted, in order.
	admitted []engine.TaskSpec
	// idempotent maps "namespace/idempotency key" to the task admitted under it.
	idempotent map[string]int64
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{tasks: map[int64]*engine.TaskState{}, next: 1, idempotent: map[string]int64{}}
}

var errDown = &engine.DatabaseError{Op: "fake", Unavailable: true, Err: errors.New("connection refused")}

func (f *fakeEngine) call(format string, args ...any) error {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	if f.down {
		return errDown
	}
	return nil
}

func (f *fakeEngine) Admit(_ context.Context, spec engine.TaskSpec) (engine.Admission, error) {
	if err := f.call("admit %s", spec.ExternalKey); err != nil {
		return engine.Admission{}, err
	}
	f.admitted = append(f.admitted, spec)
	for _, t := range f.tasks {
		if t.ExternalKey == spec.ExternalKey {
			return engine.Admission{TaskID: t.ID}, nil
		}
	}
	if id, ok := f.idempotent[spec.Namespace+"/"+spec.IdempotencyKey]; ok && spec.IdempotencyKey != "" {
		return engine.Admission{TaskID: id}, nil
	}
	if spec.IdempotencyKey != "" {
		f.idempotent[spec.Namespace+"/"+spec.IdempotencyKey] = f.next
	}
	st := &engine.TaskState{ID: f.next, ExternalKey: spec.ExternalKey, Phase: engine.TaskPending,
		Counts: map[engine.StepPhase]int{engine.StepEnqueued: len(spec.Steps)}}
	for _, s := range spec.Steps {
		st.Steps = append(st.Steps, engine.StepState{Name: s.Name, Handler: s.Handler, Phase: engine.StepEnqueued})
	}
	f.tasks[st.ID] = st
	f.next++
	return engine.Admission{TaskID: st.ID, Created: true}, nil
}

func (f *fakeEngine) TaskIDByKey(_ context.Context, key string) (int64, error) {
	if err := f.call("id %s", key); err != nil {
		return 0, err
	}
	for _, t := range f.tasks {
		if t.ExternalKey == key {
			return t.ID, nil
		}
	}
	return 0, engine.ErrTaskNotFound
}

func (f *fakeEngine) TaskIDByIdempotencyKey(_ context.Context, namespace, key string) (int64, error) {
	if err := f.call("id %s/%s", namespace, key); err != nil {
		return 0, err
	}
	if id, ok := f.idempotent[namespace+"/"+key]; ok {
		return id, nil
	}
	return 0, engine.ErrTaskNotFound
}

func (f *fakeEngine) GetTask(_ context.Context, id int64) (*engine.TaskState, error) {
	if err := f.call("get %d", id); err != nil {
		return nil, err
	}
	t, ok := f.tasks[id]
	if !ok {
		return nil, engine.ErrTaskNotFound
	}
	cp := *t
	return &cp, nil
}

func (f *fakeEngine) Cancel(_ context.Context, id int64, reason string) error {
	if err := f.call("cancel %d %s", id, reason); err != nil {
		return err
	}
	t, ok := f.tasks[id]
	if !ok {
		return engine.ErrTaskNotFound
	}
	now := time.Now()
	t.Phase, t.CompletedAt = engine.TaskCancelled, &now
	return nil
}

func (f *fakeEngine) action(ctx context.Context, format string, args ...any) error {
	f.lastAction = engine.ActionOf(ctx)
	if err := f.call(format, args...); err != nil {
		return err
	}
	err := f.actionErr
	f.actionErr = nil
	return err
}

func (f *fakeEngine) RetryStepWith(ctx context.Context, id int64, step string, r engine.Retry) error {
	return f.action(ctx, "retry %d %s %s inputs=%s", id, step, r.Reason, r.Inputs)
}

func (f *fakeEngine) ResolveStep(ctx context.Context, id int64, step, reason string) error {
	return f.action(ctx, "resolve %d %s %s", id, step, reason)
}

func (f *fakeEngine) CompleteStep(ctx context.Context, id int64, step string, result json.RawMessage) error {
	return f.action(ctx, "complete %d %s %s", id, step, result)
}

func (f *fakeEngine) Signal(ctx context.Context, id int64, signal string, payload json.RawMessage, reason string) error {
	return f.action(ctx, "signal %d %s %s %s", id, signal, payload, reason)
}

// finish makes task id succeed (or fail) at t.
func (f *fakeEngine) finish(id int64, phase engine.TaskPhase, at time.Time) {
	task := f.tasks[id]
	task.Phase, task.CompletedAt = phase, &at
	for i := range task.Steps {
		task.Steps[i].Phase = engine.StepSucceeded
	}
	task.Counts = map[engine.StepPhase]int{engine.StepSucceeded: len(task.Steps)}
}

// reconcileBundle is a TaskReconciler on a fake client, a fake engine and a fake clock.
type reconcileBundle struct {
	r      *TaskReconciler
	c      client.Client
	eng    *fakeEngine
	clock  *clocktesting.FakeClock
	events *events.FakeRecorder
}

// newReconcileBundle stores objs as the apiserver would (with their CRD's defaults) and builds the reconciler.
func newReconcileBundle(t *testing.T, objs ...client.Object) *reconcileBundle {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(taskerv1alpha1.AddToScheme(scheme))
	utilruntime.Must(corev1.AddToScheme(scheme))
	for _, obj := range objs {
		applyCRDDefaults(t, scheme, obj)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&taskerv1alpha1.Task{}, &taskerv1alpha1.TaskTemplate{}).
		WithIndex(&taskerv1alpha1.Task{}, templateNameIndex, templateNameOf).Build()
	b := &reconcileBundle{c: c, eng: newFakeEngine(), clock: clocktesting.NewFakeClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)),
		events: events.NewFakeRecorder(100)}
	b.r = &TaskReconciler{Client: c, Scheme: scheme, Databases: SingleDatabase{Name: taskerv1alpha1.DefaultDatabaseName, Tasks: b.eng}, Recorder: b.events, Clock: b.clock,
		StatusInterval: time.Second, ResyncInterval: time.Minute, dbBackoff: newDBBackoff()}
	return b
}

func (b *reconcileBundle) reconcile(t *testing.T, name string) ctrl.Result {
	t.Helper()
	res, err := b.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return res
}

func (b *reconcileBundle) task(t *testing.T, name string) *taskerv1alpha1.Task {
	t.Helper()
	var tk taskerv1alpha1.Task
	if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: name}, &tk); err != nil {
		t.Fatal(err)
	}
	return &tk
}

func newTestTask(name string, mutate ...func(*taskerv1alpha1.Task)) *taskerv1alpha1.Task {
	tk := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Generation: 1},
		Spec: taskerv1alpha1.TaskSpec{Queue: "q", Steps: []taskerv1alpha1.StepSpec{
			{Name: "a", Handler: "echo"}, {Name: "b", Handler: "echo", DependsOn: []string{"a"}}}},
	}
	for _, m := range mutate {
		m(tk)
	}
	return tk
}

func wantCondition(t *testing.T, tk *taskerv1alpha1.Task, typ string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	c := findCondition(tk.Status.Conditions, typ)
	if c == nil || c.Status != status || (reason != "" && c.Reason != reason) {
		t.Errorf("condition %s = %+v, want %s/%s", typ, c, status, reason)
	}
}

// admitAndWrite reconciles a new Task twice: admission (whose status write waits for the first window, so that a
// Task finishing within it is written once), then again once that window is over.
func (b *reconcileBundle) admitAndWrite(t *testing.T, name string) {
	t.Helper()
	res := b.reconcile(t, name)
	if res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
		t.Fatalf("after admission: requeue after %s, want within the status interval", res.RequeueAfter)
	}
	b.clock.Step(time.Second)
	b.reconcile(t, name)
}

func TestReconcileAdmitsOnceAndReportsState(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t"))
	b.admitAndWrite(t, "t")
	tk := b.task(t, "t")
	if !slices.Contains(tk.Finalizers, TaskFinalizer) {
		t.Errorf("finalizers %v", tk.Finalizers)
	}
	if tk.Status.TaskID != 1 || tk.Status.Phase != taskerv1alpha1.TaskPending || tk.Status.StepCounts.Total != 2 {
		t.Fatalf("status %+v", tk.Status)
	}
	wantCondition(t, tk, taskerv1alpha1.TaskConditionAdmitted, metav1.ConditionTrue, ReasonAdmitted)
	wantCondition(t, tk, taskerv1alpha1.TaskConditionDatabaseReachable, metav1.ConditionTrue, ReasonReachable)

	// Again: found by its UID, never a second workflow.
	b.reconcile(t, "t")
	calls := len(b.eng.calls)
	b.reconcile(t, "t")
	for _, c := range b.eng.calls[calls:] {
		if strings.HasPrefix(c, "admit") {
			t.Errorf("admitted again once the status records the task: %v", b.eng.calls[calls:])
		}
	}
	if len(b.eng.tasks) != 1 {
		t.Errorf("%d engine tasks for one Task", len(b.eng.tasks))
	}

	// The engine finishes it: the status says so, with the outcome conditions, and the resync stops.
	b.eng.finish(1, engine.TaskSucceeded, b.clock.Now())
	res := b.reconcile(t, "t")
	tk = b.task(t, "t")
	if tk.Status.Phase != taskerv1alpha1.TaskSucceeded || tk.Status.StepCounts.Succeeded != 2 {
		t.Errorf("status %+v", tk.Status)
	}
	wantCondition(t, tk, taskerv1alpha1.TaskConditionSucceeded, metav1.ConditionTrue, "")
	wantCondition(t, tk, taskerv1alpha1.TaskConditionReady, metav1.ConditionTrue, "Succeeded")
	if res.RequeueAfter != 0 {
		t.Errorf("a finished Task without TTL is requeued after %s", res.RequeueAfter)
	}
}

func TestReconcileWaitsForAMissingTemplate(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t", func(tk *taskerv1alpha1.Task) {
		tk.Spec.Steps, tk.Spec.TemplateRef = nil, &taskerv1alpha1.TemplateReference{Name: "nope"}
	}))
	res := b.reconcile(t, "t")
	tk := b.task(t, "t")
	wantCondition(t, tk, taskerv1alpha1.TaskConditionAdmitted, metav1.ConditionFalse, ReasonTemplateNotFound)
	if res.RequeueAfter != templateRetryInterval || tk.Status.TaskID != 0 {
		t.Errorf("requeue %s, task id %d", res.RequeueAfter, tk.Status.TaskID)
	}
	for _, c := range b.eng.calls {
		if strings.HasPrefix(c, "admit") {
			t.Errorf("admitted without its template: %v", b.eng.calls)
		}
	}
}

// A Task read without the schema's defaults (the CRD in the cluster predates them) waits, saying why, and is
// admitted once it is read with them.
func TestReconcileWaitsForTheCRDDefaults(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t"))
	tk := b.task(t, "t")
	tk.Spec.Steps[0].Retry = nil // as an older CRD stores it
	if err := b.c.Update(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	res := b.reconcile(t, "t")
	tk = b.task(t, "t")
	wantCondition(t, tk, taskerv1alpha1.TaskConditionAdmitted, metav1.ConditionFalse, ReasonCRDOutdated)
	wantCondition(t, tk, taskerv1alpha1.TaskConditionReady, metav1.ConditionFalse, ReasonCRDOutdated)
	if c := findCondition(tk.Status.Conditions, taskerv1alpha1.TaskConditionAdmitted); !strings.Contains(c.Message, "spec.steps[0].retry is not set") {
		t.Errorf("Admitted message %q does not name the field", c.Message)
	}
	if res.RequeueAfter != templateRetryInterval || len(b.eng.admitted) != 0 || tk.Status.Phase != taskerv1alpha1.TaskPending {
		t.Fatalf("requeue %s, %d admitted, phase %s: want a wait, nothing admitted", res.RequeueAfter, len(b.eng.admitted), tk.Status.Phase)
	}

	applyCRDDefaults(t, b.r.Scheme, tk) // the CRDs upgraded: the apiserver defaults it when reading it
	if err := b.c.Update(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	b.clock.Step(res.RequeueAfter)
	b.reconcile(t, "t")
	wantCondition(t, b.task(t, "t"), taskerv1alpha1.TaskConditionAdmitted, metav1.ConditionTrue, ReasonAdmitted)
}

func TestReconcileRunsEachActionOnce(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t", func(tk *taskerv1alpha1.Task) {
		tk.Spec.Actions = []taskerv1alpha1.TaskAction{
			{ID: "r1", Type: taskerv1alpha1.ActionRetry, Step: "a", Inputs: &apiextensionsv1.JSON{Raw: []byte(`{"x":1}`)}},
			{ID: "s1", Type: taskerv1alpha1.ActionResolve, Step: "b", Reason: "done by hand"},
			{ID: "c1", Type: taskerv1alpha1.ActionComplete, Step: "b", Result: &apiextensionsv1.JSON{Raw: []byte(`"ok"`)}},
			{ID: "g1", Type: taskerv1alpha1.ActionSignal, Signal: "approved", Result: &apiextensionsv1.JSON{Raw: []byte(`{"by":"ann"}`)}},
		}
	}))
	b.eng.actionErr = nil
	b.reconcile(t, "t") // admits, then runs the actions
	b.reconcile(t, "t")
	var actions []string
	for _, c := range b.eng.calls {
		if strings.HasPrefix(c, "retry") || strings.HasPrefix(c, "resolve") || strings.HasPrefix(c, "complete") ||
			strings.HasPrefix(c, "signal") {
			actions = append(actions, c)
		}
	}
	want := []string{`retry 1 a retried by action r1 inputs={"x":1}`, "resolve 1 b done by hand", `complete 1 b "ok"`,
		`signal 1 approved {"by":"ann"} sent by action g1`}
	if !slices.Equal(actions, want) {
		t.Errorf("engine calls %q, want %q (each once)", actions, want)
	}
	tk := b.task(t, "t")
	if len(tk.Status.Actions) != 4 || tk.Status.Actions[0].Outcome != "Done" || tk.Status.Actions[3].Message != `signal "approved" sent` {
		t.Errorf("action records %+v", tk.Status.Actions)
	}
}

// retryAnsweredWith admits Task t, gives it a Retry action of step a, which the engine answers with err, and
// returns the Task after the reconcile that ran it.
func retryAnsweredWith(t *testing.T, err error) (*reconcileBundle, *taskerv1alpha1.Task) {
	t.Helper()
	b := newReconcileBundle(t, newTestTask("t"))
	b.reconcile(t, "t")
	tk := b.task(t, "t")
	tk.Spec.Actions = []taskerv1alpha1.TaskAction{{ID: "r1", Type: taskerv1alpha1.ActionRetry, Step: "a"}}
	if err := b.c.Update(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	b.eng.actionErr = err
	b.reconcile(t, "t")
	return b, b.task(t, "t")
}

func TestReconcileRecordsARejectedAction(t *testing.T) {
	_, tk := retryAnsweredWith(t, fmt.Errorf("%w: step a is enqueued", engine.ErrInvalidTransition))
	if len(tk.Status.Actions) != 1 || tk.Status.Actions[0].Outcome != "Rejected" ||
		!strings.Contains(tk.Status.Actions[0].Message, "step a is enqueued") {
		t.Errorf("action records %+v", tk.Status.Actions)
	}
}

// An action the engine says was carried out already (its status write was lost) is recorded as done, not as
// rejected, and not carried out again; the engine is told the action's id.
func TestReconcileRecordsAnActionCarriedOutBefore(t *testing.T) {
	b, tk := retryAnsweredWith(t, fmt.Errorf("%w: action \"r1\" of task 1", engine.ErrActionDone))
	if len(tk.Status.Actions) != 1 || tk.Status.Actions[0].Outcome != "Done" ||
		!strings.Contains(tk.Status.Actions[0].Message, "carried out before") {
		t.Errorf("action records %+v", tk.Status.Actions)
	}
	if b.eng.lastAction != "r1" {
		t.Errorf("the engine was told the action id %q, want r1", b.eng.lastAction)
	}
}

func TestReconcileCancels(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t", func(tk *taskerv1alpha1.Task) { tk.Spec.Cancel = true }))
	b.reconcile(t, "t")
	if !slices.Contains(b.eng.calls, "cancel 1 spec.cancel set on the Task") {
		t.Errorf("calls %v", b.eng.calls)
	}
	if tk := b.task(t, "t"); tk.Status.Phase != taskerv1alpha1.TaskCancelled {
		t.Errorf("phase %s", tk.Status.Phase)
	}
}

func TestReconcileDeletesAfterTTL(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t", func(tk *taskerv1alpha1.Task) { tk.Spec.TTLSecondsAfterFinished = ptr.To(int32(60)) }))
	b.reconcile(t, "t")
	b.eng.finish(1, engine.TaskSucceeded, b.clock.Now())
	res := b.reconcile(t, "t")
	if res.RequeueAfter != time.Minute {
		t.Errorf("requeue after %s, want the TTL", res.RequeueAfter)
	}
	b.clock.Step(61 * time.Second)
	b.reconcile(t, "t")
	var tk taskerv1alpha1.Task
	err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "t"}, &tk)
	if err == nil && tk.DeletionTimestamp.IsZero() {
		t.Error("the Task was not deleted after its TTL")
	}
}

// A Task seen finished only after its TTL has passed is not deleted in that reconcile: its final status is written
// and stays for the TTL first.
func TestReconcileWritesTheFinalStatusBeforeTTL(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t", func(tk *taskerv1alpha1.Task) { tk.Spec.TTLSecondsAfterFinished = ptr.To(int32(1)) }))
	b.reconcile(t, "t")
	b.eng.finish(1, engine.TaskSucceeded, b.clock.Now())
	b.clock.Step(5 * time.Second) // the operator sees it late
	res := b.reconcile(t, "t")
	if tk := b.task(t, "t"); tk.Status.Phase != taskerv1alpha1.TaskSucceeded || !tk.DeletionTimestamp.IsZero() {
		t.Fatalf("first seen finished: phase %s, deleting %v; want Succeeded written, not deleted", tk.Status.Phase, !tk.DeletionTimestamp.IsZero())
	}
	if res.RequeueAfter != time.Second {
		t.Errorf("requeue after %s, want the TTL", res.RequeueAfter)
	}
	b.clock.Step(time.Second)
	b.reconcile(t, "t")
	var tk taskerv1alpha1.Task
	if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "t"}, &tk); err == nil && tk.DeletionTimestamp.IsZero() {
		t.Error("the Task was not deleted once its final status had stood for the TTL")
	}
}

func TestReconcileWhileTheDatabaseIsDown(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t"))
	b.admitAndWrite(t, "t")
	b.eng.down = true
	res := b.reconcile(t, "t")
	if res.RequeueAfter != dbRetryFirst {
		t.Errorf("requeue after %s, want %s", res.RequeueAfter, dbRetryFirst)
	}
	tk := b.task(t, "t")
	wantCondition(t, tk, taskerv1alpha1.TaskConditionDatabaseReachable, metav1.ConditionFalse, ReasonUnreachable)
	if tk.Status.TaskID != 1 {
		t.Errorf("task id %d lost during the outage", tk.Status.TaskID)
	}
	b.eng.down = false
	b.clock.Step(time.Second)
	b.reconcile(t, "t")
	wantCondition(t, b.task(t, "t"), taskerv1alpha1.TaskConditionDatabaseReachable, metav1.ConditionTrue, ReasonReachable)
}

func TestReconcilePacesProgressWrites(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t"))
	b.reconcile(t, "t")
	rv := b.task(t, "t").ResourceVersion
	// Progress right after admission: not written yet, but looked at again when the window opens.
	b.eng.tasks[1].Phase = engine.TaskRunning
	b.eng.tasks[1].Counts = map[engine.StepPhase]int{engine.StepRunning: 1, engine.StepPending: 1}
	res := b.reconcile(t, "t")
	if got := b.task(t, "t").ResourceVersion; got != rv {
		t.Errorf("progress written within the status interval")
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
		t.Errorf("requeue after %s, want within the status interval", res.RequeueAfter)
	}
	b.clock.Step(2 * time.Second)
	b.reconcile(t, "t")
	if tk := b.task(t, "t"); tk.Status.Phase != taskerv1alpha1.TaskRunning || tk.Status.StepCounts.Running != 1 {
		t.Errorf("progress not written once the window opened: %+v", tk.Status)
	}
}

func TestReconcileFinalizerCancelsTheEngineTask(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t"))
	b.reconcile(t, "t")
	if err := b.c.Delete(context.Background(), b.task(t, "t")); err != nil {
		t.Fatal(err)
	}
	b.reconcile(t, "t")
	if !slices.Contains(b.eng.calls, "cancel 1 Task deleted") {
		t.Errorf("calls %v", b.eng.calls)
	}
	var tk taskerv1alpha1.Task
	if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "t"}, &tk); !apierrors.IsNotFound(err) {
		t.Errorf("the Task is still there (finalizers %v): %v", tk.Finalizers, err)
	}
}

func TestReconcileIgnoresAStatusTaskIDOfAnotherTask(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("mine"), newTestTask("other"))
	b.reconcile(t, "mine")  // task 1
	b.reconcile(t, "other") // task 2
	tk := b.task(t, "mine")
	tk.Status.TaskID = 2
	if err := b.c.Status().Update(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	b.r.ids.Clear() // as after a restart
	tk = b.task(t, "mine")
	tk.Spec.Cancel = true
	if err := b.c.Update(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	b.reconcile(t, "mine")
	if slices.Contains(b.eng.calls, "cancel 2 spec.cancel set on the Task") || !slices.Contains(b.eng.calls, "cancel 1 spec.cancel set on the Task") {
		t.Errorf("calls %v: want task 1 cancelled, task 2 untouched", b.eng.calls)
	}
	if got := b.task(t, "mine").Status.TaskID; got != 1 {
		t.Errorf("status.taskID %d, want corrected to 1", got)
	}
}

func TestReconcileAdmitsFromATemplate(t *testing.T) {
	tmpl := &taskerv1alpha1.TaskTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "ns", Generation: 3},
		Spec: taskerv1alpha1.TaskTemplateSpec{
			DefaultContext: &apiextensionsv1.JSON{Raw: []byte(`{"a":1,"b":1}`)},
			Parameters: []taskerv1alpha1.TemplateParameter{
				{Name: "region", Type: taskerv1alpha1.ParameterString, Required: true},
				{Name: "days", Type: taskerv1alpha1.ParameterInteger, Default: &apiextensionsv1.JSON{Raw: []byte(`7`)}},
			},
			Steps: []taskerv1alpha1.StepSpec{{Name: "x", Handler: "echo", Queue: "other", TimeoutSeconds: ptr.To(int32(30)),
				Inputs: &apiextensionsv1.JSON{Raw: []byte(`{"k":"v"}`)},
				Retry: &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(5)), Backoff: &taskerv1alpha1.Backoff{
					Base: &metav1.Duration{Duration: 2 * time.Second}, Max: &metav1.Duration{Duration: time.Minute}}}}},
		},
	}
	b := newReconcileBundle(t, tmpl, newTestTask("t", func(tk *taskerv1alpha1.Task) {
		tk.Spec.Steps, tk.Spec.TemplateRef = nil, &taskerv1alpha1.TemplateReference{Name: "report"}
		tk.Spec.Context = &apiextensionsv1.JSON{Raw: []byte(`{"b":2}`)}
		tk.Spec.Arguments = &apiextensionsv1.JSON{Raw: []byte(`{"region":"eu"}`)}
	}))
	b.admitAndWrite(t, "t")
	if len(b.eng.admitted) == 0 || len(b.eng.tasks) != 1 {
		t.Fatalf("admitted %d specs into %d tasks", len(b.eng.admitted), len(b.eng.tasks))
	}
	spec := b.eng.admitted[0]
	if string(spec.Context) != `{"a":1,"b":2,"params":{"days":7,"region":"eu"}}` {
		t.Errorf("context %s: want the template's defaults under the Task's own, and the parameters", spec.Context)
	}
	if len(spec.Steps) != 1 {
		t.Fatalf("steps %+v", spec.Steps)
	}
	s := spec.Steps[0]
	if s.Name != "x" || s.Queue != queuescope.Namespaced(spec.Namespace, "other") || s.Timeout != 30*time.Second || s.Retry.MaxAttempts != 5 ||
		s.Retry.BackoffBase != 2*time.Second || s.Retry.BackoffMax != time.Minute || string(s.Inputs) != `{"k":"v"}` {
		t.Errorf("step %+v", s)
	}
	got := b.task(t, "t")
	if c := findCondition(got.Status.Conditions, taskerv1alpha1.TaskConditionAdmitted); c == nil ||
		!strings.Contains(c.Message, `from TaskTemplate "report" (generation 3, sha256:`) {
		t.Errorf("Admitted condition %+v", c)
	}
	if o := got.Status.Template; o == nil || o.Name != "report" || o.Generation != 3 || !strings.HasPrefix(o.Hash, "sha256:") || len(o.Hash) != 23 {
		t.Errorf("status.template %+v", o)
	}
}

// A Task pinning a template generation waits for it while it is ahead, and fails once the template is past it
// (generations never go back); bad arguments (a Task created while the webhook was off) fail admission naming the
// argument.
func TestReconcileTemplatePinAndArguments(t *testing.T) {
	tmpl := &taskerv1alpha1.TaskTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "ns", Generation: 3},
		Spec: taskerv1alpha1.TaskTemplateSpec{
			Parameters: []taskerv1alpha1.TemplateParameter{{Name: "days", Type: taskerv1alpha1.ParameterInteger}},
			Steps: []taskerv1alpha1.StepSpec{{Name: "x", Handler: "echo", TimeoutSeconds: ptr.To(int32(30)),
				Retry: &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(5)), Backoff: &taskerv1alpha1.Backoff{
					Base: &metav1.Duration{Duration: 2 * time.Second}, JitterPercent: ptr.To(int32(0))}}}},
		},
	}
	fromTemplate := func(gen int64, args string) func(*taskerv1alpha1.Task) {
		return func(tk *taskerv1alpha1.Task) {
			tk.Spec.Steps, tk.Spec.TemplateRef = nil, &taskerv1alpha1.TemplateReference{Name: "report", Generation: &gen}
			tk.Spec.Arguments = &apiextensionsv1.JSON{Raw: []byte(args)}
		}
	}
	b := newReconcileBundle(t, tmpl, newTestTask("ahead", fromTemplate(4, `{}`)), newTestTask("behind", fromTemplate(2, `{}`)),
		newTestTask("bad", fromTemplate(3, `{"days":"x","weeks":1}`)), newTestTask("ok", fromTemplate(3, `{"days":5}`)))
	for _, tc := range []struct {
		name   string
		phase  taskerv1alpha1.TaskPhase
		reason string
		msg    []string
	}{
		{"ahead", taskerv1alpha1.TaskPending, ReasonTemplateGeneration, []string{`pins generation 4 of TaskTemplate "report", which is at generation 3`, "admitted when the template reaches it"}},
		{"behind", taskerv1alpha1.TaskFailed, ReasonTemplateGeneration, []string{"pins generation 2", "never goes back"}},
		{"bad", taskerv1alpha1.TaskFailed, ReasonInvalidSpec, []string{`spec.arguments[weeks]: Unsupported value`, `spec.arguments[days]`, "must be an integer"}},
		{"ok", taskerv1alpha1.TaskPending, ReasonAdmitted, []string{"generation 3"}},
	} {
		b.reconcile(t, tc.name)
		b.clock.Step(time.Second)
		b.reconcile(t, tc.name)
		got := b.task(t, tc.name)
		c := findCondition(got.Status.Conditions, taskerv1alpha1.TaskConditionAdmitted)
		ok := got.Status.Phase == tc.phase && c != nil && c.Reason == tc.reason
		for _, m := range tc.msg {
			ok = ok && strings.Contains(c.Message, m)
		}
		if !ok {
			t.Errorf("%s: phase %q, Admitted %+v; want %q, %s, %q", tc.name, got.Status.Phase, c, tc.phase, tc.reason, tc.msg)
		}
	}
	if len(b.eng.admitted) == 0 {
		t.Fatal("nothing admitted")
	}
	for _, a := range b.eng.admitted { // only "ok" (admitting is idempotent: it may be asked again)
		if a.Name != "ok" || string(a.Context) != `{"params":{"days":5}}` {
			t.Errorf("admitted %s with context %s", a.Name, a.Context)
		}
	}
}

func TestReconcileReportsAFailure(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t"))
	b.admitAndWrite(t, "t")
	b.eng.finish(1, engine.TaskFailed, b.clock.Now())
	task := b.eng.tasks[1]
	task.Steps[0].Phase, task.Steps[0].LastErrorMessage, task.Steps[0].Attempts = engine.StepFailed, "card declined", 3
	task.Steps[1].Phase = engine.StepSkipped
	task.Counts = map[engine.StepPhase]int{engine.StepFailed: 1, engine.StepSkipped: 1}
	b.reconcile(t, "t")
	tk := b.task(t, "t")
	if tk.Status.Phase != taskerv1alpha1.TaskFailed || tk.Status.StepCounts.Failed != 1 || tk.Status.StepCounts.Skipped != 1 {
		t.Errorf("status %+v", tk.Status)
	}
	wantCondition(t, tk, taskerv1alpha1.TaskConditionFailed, metav1.ConditionTrue, "")
	wantCondition(t, tk, taskerv1alpha1.TaskConditionStalled, metav1.ConditionTrue, "")
	if c := findCondition(tk.Status.Conditions, taskerv1alpha1.TaskConditionFailed); c == nil || !strings.Contains(c.Message, "card declined") {
		t.Errorf("Failed condition %+v: want the step's error", c)
	}
	found := false
	for len(b.events.Events) > 0 {
		if e := <-b.events.Events; strings.Contains(e, "Failed") && strings.Contains(e, "card declined") {
			found = true
		}
	}
	if !found {
		t.Error("no Failed event naming the error")
	}
}

func TestTaskChangedAndResyncQueueTheirTasks(t *testing.T) {
	done := newTestTask("done")
	done.Status.Phase = taskerv1alpha1.TaskSucceeded
	b := newReconcileBundle(t, newTestTask("t"), done)
	b.r.changes = make(chan event.GenericEvent, 10)
	b.reconcile(t, "t")
	b.r.TaskChanged(context.Background(), taskerv1alpha1.DefaultDatabaseName, 1)
	b.r.TaskChanged(context.Background(), taskerv1alpha1.DefaultDatabaseName, 99) // unknown: ignored
	if got := (<-b.r.changes).Object.GetName(); got != "t" || len(b.r.changes) != 0 {
		t.Errorf("TaskChanged queued %q and %d more", got, len(b.r.changes))
	}
	b.r.ResyncActive(context.Background(), taskerv1alpha1.DefaultDatabaseName)
	if len(b.r.changes) != 1 || (<-b.r.changes).Object.GetName() != "t" {
		t.Error("ResyncActive must queue the unfinished Task only")
	}
}

func TestTaskTemplateReconcile(t *testing.T) {
	valid := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "ok", Namespace: "ns", Generation: 2},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "a", Handler: "h"}}}}
	cyclic := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "loop", Namespace: "ns", Generation: 1},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{
			{Name: "a", Handler: "h", DependsOn: []string{"b"}}, {Name: "b", Handler: "h", DependsOn: []string{"a"}}}}}
	b := newReconcileBundle(t, valid, cyclic, newTestTask("user", func(tk *taskerv1alpha1.Task) {
		tk.Spec.Steps, tk.Spec.TemplateRef = nil, &taskerv1alpha1.TemplateReference{Name: "ok"}
	}))
	r := &TaskTemplateReconciler{Client: b.c, Scheme: b.r.Scheme}
	for _, name := range []string{"ok", "loop", "gone"} {
		if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}}); err != nil {
			t.Fatalf("Reconcile %s: %v", name, err)
		}
	}
	get := func(name string) *taskerv1alpha1.TaskTemplate {
		var tt taskerv1alpha1.TaskTemplate
		if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: name}, &tt); err != nil {
			t.Fatal(err)
		}
		return &tt
	}
	ok := get("ok")
	if ok.Status.UsedBy != 1 || ok.Status.Steps != 1 || ok.Status.ObservedGeneration != 2 {
		t.Errorf("status %+v", ok.Status)
	}
	if c := findCondition(ok.Status.Conditions, taskerv1alpha1.TaskTemplateConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v", c)
	}
	if c := findCondition(get("loop").Status.Conditions, taskerv1alpha1.TaskTemplateConditionReady); c == nil ||
		c.Status != metav1.ConditionFalse || c.Reason != "Invalid" || !strings.Contains(c.Message, "cycle") {
		t.Errorf("Ready of a cyclic template %+v", c)
	}
	// Nothing changed: no write.
	rv := ok.ResourceVersion
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "ok"}}); err != nil {
		t.Fatal(err)
	}
	if get("ok").ResourceVersion != rv {
		t.Error("an unchanged status was written again")
	}
}

func TestTrimCutsOnARuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdefghij", 8, "abcde..."},
		{"ééééé", 8, "éé..."}, // 10 bytes; a cut inside the third é moves back to its start
	} {
		if got := trim(tc.in, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("trim(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// A Task with the idempotency key of a run admitted before (by a Task deleted since, e.g. by its TTL, and applied
// again) is bound to that run: the same engine task, an Admitted message and a Bound event that say so, and
// nothing admitted twice.
func TestReconcileBindsAnIdempotencyKeyToItsRun(t *testing.T) {
	keyed := func(tk *taskerv1alpha1.Task) { tk.Spec.IdempotencyKey = "nightly-2026-12-06" }
	first := newTestTask("first", keyed)
	again := newTestTask("again", keyed)
	b := newReconcileBundle(t, first, again)
	b.admitAndWrite(t, "first")
	b.admitAndWrite(t, "again")
	if got := b.task(t, "again"); got.Status.TaskID != b.task(t, "first").Status.TaskID || len(b.eng.tasks) != 1 {
		t.Fatalf("again is task %d; %d tasks in the engine", got.Status.TaskID, len(b.eng.tasks))
	}
	c := findCondition(b.task(t, "again").Status.Conditions, taskerv1alpha1.TaskConditionAdmitted)
	if c == nil || !strings.Contains(c.Message, `bound to task 1, the run of idempotency key "nightly-2026-12-06"`) {
		t.Errorf("Admitted condition %+v", c)
	}
	// A new reconciler (an operator restart) finds the run by the key, not by the UID, and admits nothing.
	n := len(b.eng.admitted)
	b.r.ids.Clear()
	b.reconcile(t, "again")
	if len(b.eng.admitted) != n {
		t.Errorf("admitted again after a restart")
	}
}
