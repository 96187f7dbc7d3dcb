package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// fakeCluster is a Cluster over fixed objects.
type fakeCluster struct {
	tasks        []taskerv1alpha1.Task
	pools        []taskerv1alpha1.WorkerPool
	poolsErr     error
	cronTasks    []taskerv1alpha1.CronTask
	cronTasksErr error
}

func (f *fakeCluster) Tasks() ([]taskerv1alpha1.Task, error) { return f.tasks, nil }

func (f *fakeCluster) Task(namespace, name string) (*taskerv1alpha1.Task, error) {
	for i := range f.tasks {
		if f.tasks[i].Namespace == namespace && f.tasks[i].Name == name {
			return &f.tasks[i], nil
		}
	}
	return nil, apierrors.NewNotFound(taskerv1alpha1.GroupVersion.WithResource("tasks").GroupResource(), name)
}

func (f *fakeCluster) WorkerPools() ([]taskerv1alpha1.WorkerPool, error) { return f.pools, f.poolsErr }

func (f *fakeCluster) CronTasks() ([]taskerv1alpha1.CronTask, error) {
	return f.cronTasks, f.cronTasksErr
}

// fakeDatabase is a Database with one task's state and history; err, when set, is every call's error.
type fakeDatabase struct {
	state   *engine.TaskState
	history []engine.HistoryEntry
	inputs  map[string]json.RawMessage
	err     error
}

func (f *fakeDatabase) GetTask(_ context.Context, id int64) (*engine.TaskState, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.state == nil || f.state.ID != id {
		return nil, fmt.Errorf("%w: task %d not found", engine.ErrTaskNotFound, id)
	}
	return f.state, nil
}

func (f *fakeDatabase) History(_ context.Context, _ int64, step string) ([]engine.HistoryEntry, error) {
	var out []engine.HistoryEntry
	for _, h := range f.history {
		if h.Step == step {
			out = append(out, h)
		}
	}
	return out, f.err
}

func (f *fakeDatabase) StepInputs(_ context.Context, _ int64, step string) (json.RawMessage, error) {
	return f.inputs[step], f.err
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func mtime(sec int) *metav1.Time { t := metav1.NewTime(at(sec)); return &t }

// orderTask is the demo's order-fulfilment Task as the operator reports it: admitted as task 7, running.
func orderTask(ns string) taskerv1alpha1.Task {
	tk := taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "order-fulfillment", CreationTimestamp: metav1.NewTime(at(0))}}
	tk.Spec.Steps = []taskerv1alpha1.StepSpec{
		{Name: "validate-order", Handler: "echo", Inputs: &apiextensionsv1.JSON{Raw: []byte(`{"checks":["address"]}`)}},
		{Name: "charge-payment", Handler: "fail", DependsOn: []string{"validate-order"}},
		{Name: "reserve-inventory", Handler: "sleep", DependsOn: []string{"validate-order"}},
		{Name: "ship", Handler: "echo", DependsOn: []string{"charge-payment", "reserve-inventory"}},
	}
	tk.Status = taskerv1alpha1.TaskStatus{Phase: taskerv1alpha1.TaskRunning, Progress: "2/4", TaskID: 7, StartedAt: mtime(1),
		Steps: []taskerv1alpha1.StepSummary{
			{Name: "validate-order", State: "succeeded", Attempts: 1},
			{Name: "charge-payment", State: "retrying", Attempts: 1, Message: "card processor timed out"},
		}}
	return tk
}

// orderState is the database's state of orderTask: charge-payment succeeded on its second attempt.
func orderState() *engine.TaskState {
	step := func(name, handler, phase string, attempts int, deps ...string) engine.StepState {
		return engine.StepState{Name: name, Handler: handler, Phase: engine.StepPhase(phase), Attempts: attempts, DependsOn: deps}
	}
	return &engine.TaskState{ID: 7, Phase: engine.TaskRunning, Steps: []engine.StepState{
		step("validate-order", "echo", "succeeded", 1),
		step("charge-payment", "fail", "succeeded", 2, "validate-order"),
		step("reserve-inventory", "sleep", "succeeded", 1, "validate-order"),
		step("ship", "echo", "running", 1, "charge-payment", "reserve-inventory"),
	}}
}

// chargeHistory is charge-payment's history: attempt 1 failed on worker w1, attempt 2 succeeded on w2.
func chargeHistory() []engine.HistoryEntry {
	h := func(sec int, from, to string, attempt int, worker, reason, errMsg string) engine.HistoryEntry {
		return engine.HistoryEntry{At: at(sec), Step: "charge-payment", From: from, To: to, Attempt: attempt, Worker: worker,
			Reason: reason, Error: errMsg}
	}
	return []engine.HistoryEntry{
		h(2, "pending", "enqueued", 0, "", "dependencies finished", ""),
		h(3, "enqueued", "running", 1, "w1", "claimed", ""),
		h(5, "running", "retrying", 1, "w1", "failed", "card processor timed out"),
		h(6, "retrying", "running", 2, "w2", "claimed", ""),
		h(9, "running", "succeeded", 2, "w2", "completed", ""),
	}
}
