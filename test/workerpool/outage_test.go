package workerpool

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
)

// When PostgreSQL is unreachable the operator keeps running, pools keep their replicas (or take their
// fallbackReplicas after failureThreshold failed readings), and MetricsAvailable says so without the database's
// error text; when it is back, scaling resumes.
//
// Not parallel: it stops the shared server, so it runs before the parallel tests start.
func TestDatabaseOutage(t *testing.T) {
	cluster := pgtest.Shared()
	if cluster == nil {
		t.Skip("external database server: cannot stop it")
	}
	ns := newNamespace(t)
	qk, qf := newQueue(t, ns, "keep"), newQueue(t, ns, "fallback")
	newPool(t, ns, "keep", []string{qk}, scalingOpts{min: 0, max: 5, target: 10, window: 1, cooldown: 1})
	newPool(t, ns, "fallback", []string{qf}, scalingOpts{min: 0, max: 5, target: 10, window: 1, cooldown: 1,
		fallback: ptr.To(int32(1)), failureThreshold: ptr.To(int32(2))})
	send(t, ns, qk, 30)
	send(t, ns, qf, 30)
	waitReplicas(t, ns, "keep", 3, 30*time.Second)
	waitReplicas(t, ns, "fallback", 3, 30*time.Second)

	cluster.Pause()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = cluster.Resume(context.Background())
		}
	})

	p := waitCondition(t, ns, "keep", taskerv1alpha1.WorkerPoolConditionMetricsAvailable, metav1.ConditionFalse,
		"DatabaseUnavailable", 30*time.Second)
	msg := condition(p, taskerv1alpha1.WorkerPoolConditionMetricsAvailable).Message
	if !strings.Contains(msg, qk) || !strings.Contains(msg, "operator's logs") {
		t.Errorf("MetricsAvailable message %q: want the queue and a pointer to the logs", msg)
	}
	for _, raw := range []string{"dial", "connect", "refused", "127.0.0.1", "SQLSTATE", "pgmq:"} {
		if strings.Contains(msg, raw) {
			t.Errorf("MetricsAvailable message %q shows the database error (%q)", msg, raw)
		}
	}
	if c := condition(p, taskerv1alpha1.WorkerPoolConditionActive); c.Status != metav1.ConditionUnknown {
		t.Errorf("Active during the outage = %+v, want Unknown", c)
	}
	waitEvent(t, ns, "keep", "MetricsUnavailable", "could not read the backlog")

	// The fallback pool goes to its fallbackReplicas after two failed readings; the other keeps its count for as
	// many failed readings as the outage lasts.
	waitReplicas(t, ns, "fallback", 1, 30*time.Second)
	waitCondition(t, ns, "fallback", taskerv1alpha1.WorkerPoolConditionMetricsAvailable, metav1.ConditionFalse,
		"DatabaseUnavailable", 10*time.Second)
	if got := replicas(t, ns, "keep"); got != 3 {
		t.Errorf("pool without fallback has %d replicas during the outage, want 3 (kept)", got)
	}
	if p := getPool(t, ns, "keep"); p.Status.Backlog != 30 {
		t.Errorf("backlog during the outage %d, want the last reading (30)", p.Status.Backlog)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.Resume(ctx); err != nil {
		t.Fatalf("resume database: %v", err)
	}
	resumed = true
	waitCondition(t, ns, "keep", taskerv1alpha1.WorkerPoolConditionMetricsAvailable, metav1.ConditionTrue, "BacklogRead", 30*time.Second)
	waitCondition(t, ns, "fallback", taskerv1alpha1.WorkerPoolConditionMetricsAvailable, metav1.ConditionTrue, "BacklogRead", 30*time.Second)
	waitReplicas(t, ns, "fallback", 3, 30*time.Second)
	if got := replicas(t, ns, "keep"); got != 3 {
		t.Errorf("pool without fallback has %d replicas after the outage, want 3", got)
	}
}
