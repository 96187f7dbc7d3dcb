package cli

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// describe's flow-control lines: the group wait from status, and the limits of the Queues that name the Task's
// queues (by name, or by database queue for a view from the database), not the others.
func TestFlowControlLines(t *testing.T) {
	tk := &taskerv1alpha1.Task{
		Spec: taskerv1alpha1.TaskSpec{Queue: "orders", Steps: []taskerv1alpha1.StepSpec{{Name: "a", Handler: "h"}}},
		Status: taskerv1alpha1.TaskStatus{Concurrency: &taskerv1alpha1.ConcurrencyStatus{
			Group: "shop/deploy=acme", Waiting: true, Ahead: 3, Running: 2, MaxRunning: 2}},
	}
	v := FromStatus(tk)
	queues := []taskerv1alpha1.Queue{
		{ObjectMeta: metav1.ObjectMeta{Name: "orders"}, Spec: taskerv1alpha1.QueueSpec{MaxRunning: ptr.To[int32](5),
			Rate: &taskerv1alpha1.QueueRate{Steps: 20, PerSeconds: 1}},
			Status: taskerv1alpha1.QueueStatus{Running: 4, Conditions: []metav1.Condition{{Type: "Ready", Status: "True"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "mail"}, Spec: taskerv1alpha1.QueueSpec{MaxRunning: ptr.To[int32](1)},
			Status: taskerv1alpha1.QueueStatus{DatabaseQueue: "mail_x"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: taskerv1alpha1.QueueSpec{MaxRunning: ptr.To[int32](1)}},
	}
	v.Steps = append(v.Steps, StepView{Name: "b", Queue: "mail_x"})
	AddQueueLimits(&v, tk, queues)
	want := []string{
		"Concurrency group shop/deploy=acme: waiting for a slot, 3 ahead (2 of 2 running)",
		"Queue orders limits: at most 5 running (4 now), 20 steps per 1s",
		"Queue mail limits: at most 1 running (0 now) (not in force: see the Queue's Ready condition)",
	}
	if got := FlowControlLines(v); !reflect.DeepEqual(got, want) {
		t.Fatalf("lines:\n%q\nwant\n%q", got, want)
	}
	if got := FlowControlLines(FromStatus(&taskerv1alpha1.Task{})); len(got) != 0 {
		t.Fatalf("a Task without flow control: %q", got)
	}
}
