package workerpool

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// Acceptance 2: 500 messages scale the Deployment to the expected count at the first reading that sees them;
// draining the queue scales it down after the stabilization window, then to zero after the cooldown; the
// count never exceeds maxReplicas.
func TestScalesWithTheBacklog(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	q := newQueue(t, ns, "scale")
	log := watchReplicas(t, ns)
	const (
		window   = 2 // s
		cooldown = 4 // s
	)
	// 500 at 10 per replica proposes 50; the first scale-up may add 4 (rate limit); maxReplicas 3 binds.
	newPool(t, ns, "workers", []string{q}, scalingOpts{min: 0, max: 3, target: 10, window: window, cooldown: cooldown})

	p := waitCondition(t, ns, "workers", taskerv1alpha1.WorkerPoolConditionMetricsAvailable, metav1.ConditionTrue, "BacklogRead", 30*time.Second)
	if got := replicas(t, ns, "workers"); got != 0 {
		t.Fatalf("an idle pool with minReplicas 0 has %d replicas", got)
	}
	if c := condition(p, taskerv1alpha1.WorkerPoolConditionActive); c.Status != metav1.ConditionFalse {
		t.Fatalf("idle pool: Active = %+v", c)
	}

	send(t, ns, q, 500)
	// The first status that reports the 500 messages comes from the reading that saw them; the same reconcile
	// wrote the Deployment before the status, so both must already show the final count: no intermediate steps,
	// i.e. the pool reached it within one polling interval of the messages arriving.
	waitFor(t, 30*time.Second, "a reading of the 500 messages", func() (bool, error) {
		p = getPool(t, ns, "workers")
		return p.Status.Backlog == 500, nil
	})
	if p.Status.DesiredReplicas != 3 {
		t.Fatalf("first reading of 500 messages: desiredReplicas %d, want 3", p.Status.DesiredReplicas)
	}
	if got := replicas(t, ns, "workers"); got != 3 {
		t.Fatalf("first reading of 500 messages: deployment replicas %d, want 3", got)
	}
	if c := condition(p, taskerv1alpha1.WorkerPoolConditionScalingLimited); c.Status != metav1.ConditionTrue || c.Reason != "TooManyReplicas" {
		t.Errorf("ScalingLimited = %+v, want True TooManyReplicas", c)
	}
	if c := condition(p, taskerv1alpha1.WorkerPoolConditionActive); c.Status != metav1.ConditionTrue {
		t.Errorf("Active = %+v", c)
	}
	if p.Status.LastScaleTime == nil || p.Status.LastActiveTime == nil {
		t.Errorf("lastScaleTime %v, lastActiveTime %v: want both set", p.Status.LastScaleTime, p.Status.LastActiveTime)
	}
	checkConditionsCurrent(t, p)
	waitEvent(t, ns, "workers", "Scaled", "from 0 to 3 replicas")
	if v, ok := gauge(t, "tasker_workerpool_backlog", ns, "workers"); !ok || v != 500 {
		t.Errorf("tasker_workerpool_backlog = %v (present %v), want 500", v, ok)
	}
	if v, ok := gauge(t, "tasker_workerpool_desired_replicas", ns, "workers"); !ok || v != 3 {
		t.Errorf("tasker_workerpool_desired_replicas = %v (present %v), want 3", v, ok)
	}

	purge(t, ns, q)
	waitReplicas(t, ns, "workers", 1, 30*time.Second)
	waitReplicas(t, ns, "workers", 0, 30*time.Second)

	// The window and the cooldown count from the last reading that found the pool active: status.lastActiveTime
	// (truncated to the second, so never later than that reading). The operator runs in this process, on the
	// same clock as the watch. (Lower bounds only: they show the window and the cooldown were honoured.)
	p = getPool(t, ns, "workers")
	lastActive := p.Status.LastActiveTime.Time
	if got := log.seen("workers", 1).Sub(lastActive); got < window*time.Second {
		t.Errorf("scaled down %s after the last active reading, before the %ds stabilization window", got, window)
	}
	if got := log.seen("workers", 0).Sub(lastActive); got < cooldown*time.Second {
		t.Errorf("scaled to zero %s after the last active reading, before the %ds cooldown", got, cooldown)
	}
	if seq := log.values("workers"); !slices.Equal(seq, []int32{0, 3, 1, 0}) {
		t.Errorf("replica counts written: %v, want [0 3 1 0]", seq)
	}
	waitEvent(t, ns, "workers", "Scaled", "from 3 to 1 replicas")
	waitEvent(t, ns, "workers", "Scaled", "from 1 to 0 replicas")

	p = waitCondition(t, ns, "workers", taskerv1alpha1.WorkerPoolConditionActive, metav1.ConditionFalse, "Idle", 10*time.Second)
	if p.Status.Backlog != 0 || p.Status.DesiredReplicas != 0 {
		t.Errorf("drained pool: backlog %d desired %d", p.Status.Backlog, p.Status.DesiredReplicas)
	}
	// The zeros are stored, not omitted: kubectl get's printer columns show a missing field as blank.
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskerv1alpha1.GroupVersion.WithKind("WorkerPool"))
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "workers"}, u); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"backlog", "desiredReplicas", "readyReplicas"} {
		if v, found, err := unstructured.NestedInt64(u.Object, "status", field); !found || err != nil || v != 0 {
			t.Errorf("stored status.%s = %d (found %t, %v), want 0", field, v, found, err)
		}
	}
	checkConditionsCurrent(t, p)
}
