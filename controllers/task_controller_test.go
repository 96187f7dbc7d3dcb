package controllers

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

func TestAfterDatabaseError(t *testing.T) {
	unreachable := &engine.DatabaseError{Op: "get task", Unavailable: true, Err: errors.New("dial tcp: connection refused")}
	unexpected := &engine.DatabaseError{Op: "get task", Err: errors.New("syntax error")}
	apiserver := errors.New("the object has been modified")
	for _, tc := range []struct {
		name      string
		err, werr error
		wantErr   bool
	}{
		{name: "unreachable database: requeued quietly", err: unreachable},
		{name: "unexpected database error: returned", err: unexpected, wantErr: true},
		{name: "status write failed too: returned", err: unreachable, werr: apiserver, wantErr: true},
		{name: "not a database error: returned", err: apiserver, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &TaskReconciler{dbBackoff: newDBBackoff()}
			res, err := r.afterDatabaseError(context.Background(), types.NamespacedName{Name: "t"}, tc.err, tc.werr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error: %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if !errors.Is(err, tc.err) || (tc.werr != nil && !errors.Is(err, tc.werr)) {
					t.Errorf("error %v does not carry %v and %v", err, tc.err, tc.werr)
				}
				if res.RequeueAfter != 0 {
					t.Errorf("RequeueAfter = %s with an error returned", res.RequeueAfter)
				}
			} else if res.RequeueAfter != dbRetryFirst {
				t.Errorf("RequeueAfter = %s, want %s", res.RequeueAfter, dbRetryFirst)
			}
		})
	}
}

// The backoff doubles per Task, stops at dbRetryMax, and starts again once the Task reached the database.
func TestAfterDatabaseErrorBackoff(t *testing.T) {
	r := &TaskReconciler{dbBackoff: newDBBackoff()}
	down := &engine.DatabaseError{Op: "admit", Unavailable: true, Err: errors.New("timeout")}
	a, b := types.NamespacedName{Name: "a"}, types.NamespacedName{Name: "b"}
	var got []time.Duration
	for range 8 {
		res, err := r.afterDatabaseError(context.Background(), a, down, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.RequeueAfter)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("backoff = %v, want %v seconds", got, want)
		}
	}
	if res, _ := r.afterDatabaseError(context.Background(), b, down, nil); res.RequeueAfter != time.Second {
		t.Errorf("another Task's first retry waits %s, want 1s", res.RequeueAfter)
	}
	r.dbBackoff.Forget(a) // what a reconcile that reached the database does
	if res, _ := r.afterDatabaseError(context.Background(), a, down, nil); res.RequeueAfter != time.Second {
		t.Errorf("after a success the backoff restarts at %s, want 1s", res.RequeueAfter)
	}
}

// Progress is written at once the first time, then at most once per gap (StatusInterval doubled with each write:
// 2 s, 4 s, ...), measured on the reconciler's clock; an urgent change is written at once.
func TestWriteStatusPacesProgress(t *testing.T) {
	s := runtime.NewScheme()
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	task := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t"}}
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&taskerv1alpha1.Task{}).WithObjects(task).Build()
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	r := &TaskReconciler{Client: c, Scheme: s, StatusInterval: time.Second, Clock: clk}
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "ns", Name: "t"}
	write := func(progress string, urgent bool) ctrl.Result {
		t.Helper()
		var cur taskerv1alpha1.Task
		if err := c.Get(ctx, key, &cur); err != nil {
			t.Fatal(err)
		}
		old := cur.Status.DeepCopy()
		cur.Status.Progress = progress
		res, err := r.writeStatus(ctx, &cur, old, ctrl.Result{}, urgent)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	stored := func() string {
		var cur taskerv1alpha1.Task
		if err := c.Get(ctx, key, &cur); err != nil {
			t.Fatal(err)
		}
		return cur.Status.Progress
	}

	if res := write("1/10", false); res.RequeueAfter != 0 || stored() != "1/10" {
		t.Fatalf("first write: %+v, stored %q", res, stored())
	}
	clk.SetTime(clk.Now().Add(300 * time.Millisecond))
	if res := write("2/10", false); res.RequeueAfter != 1700*time.Millisecond || stored() != "1/10" {
		t.Fatalf("within the first gap (2 s): %+v, stored %q", res, stored())
	}
	clk.SetTime(clk.Now().Add(1700 * time.Millisecond))
	if res := write("2/10", false); res.RequeueAfter != 0 || stored() != "2/10" {
		t.Fatalf("after the gap: %+v, stored %q", res, stored())
	}
	clk.SetTime(clk.Now().Add(1500 * time.Millisecond))
	if res := write("3/10", false); res.RequeueAfter != 2500*time.Millisecond || stored() != "2/10" {
		t.Fatalf("within the second gap (4 s): %+v, stored %q", res, stored())
	}
	if res := write("10/10", true); res.RequeueAfter != 0 || stored() != "10/10" {
		t.Fatalf("urgent: %+v, stored %q", res, stored())
	}
}

func TestScopeQueues(t *testing.T) {
	var scope queuescope.Scope
	if err := scope.Share("gpu=ml"); err != nil {
		t.Fatal(err)
	}
	spec := engine.TaskSpec{Namespace: "ml", Queue: "default", Steps: []engine.StepSpec{
		{Name: "a"}, {Name: "b", Queue: "gpu"}, {Name: "c", Queue: "cpu"}}}
	scopeQueues(&spec, scope)
	want := []string{queuescope.Namespaced("ml", "default"), "", "gpu", queuescope.Namespaced("ml", "cpu")}
	if got := []string{spec.Queue, spec.Steps[0].Queue, spec.Steps[1].Queue, spec.Steps[2].Queue}; !slices.Equal(got, want) {
		t.Errorf("queues %v, want %v", got, want)
	}
	// Another namespace reaches neither ml's queues nor the queue shared with ml only.
	other := engine.TaskSpec{Namespace: "web", Queue: "default", Steps: []engine.StepSpec{{Name: "b", Queue: "gpu"}}}
	scopeQueues(&other, scope)
	if other.Queue == spec.Queue || other.Steps[0].Queue != queuescope.Namespaced("web", "gpu") {
		t.Errorf("namespace web got queues %s and %s", other.Queue, other.Steps[0].Queue)
	}
}
