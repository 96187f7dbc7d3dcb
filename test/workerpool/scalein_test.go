package workerpool

import (
	"context"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// workerPod creates a Pod as the pool's ReplicaSet would (envtest has none): with the pool's selector labels.
func workerPod(t *testing.T, ns, name string, labels map[string]string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "worker", Image: "worker:dev"}},
		},
	}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0)) })
}

// heartbeat records a worker the way the SDK does, through the protocol function.
func heartbeat(t *testing.T, id string, queues []string, inFlight int) {
	t.Helper()
	if _, err := dbPool.Exec(ctxFor(t, 10*time.Second),
		`SELECT tasker.worker_heartbeat($1::text, $2::text[], $3::integer, $4::integer)`, id, queues, 4, inFlight); err != nil {
		t.Fatalf("worker heartbeat %s: %v", id, err)
	}
	t.Cleanup(func() {
		_, _ = dbPool.Exec(context.Background(), `SELECT tasker.worker_stopped($1::text)`, id)
	})
}

func deletionCost(t *testing.T, ns, pod string) (int, bool) {
	t.Helper()
	var p corev1.Pod
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: pod}, &p); err != nil {
		t.Fatalf("get pod %s: %v", pod, err)
	}
	v, ok := p.Annotations[controllers.AnnotationPodDeletionCost]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("pod %s: deletion cost %q is not an integer", pod, v)
	}
	return n, true
}

// Acceptance 3: at scale-in, Pods whose workers report steps in flight carry a higher deletion cost than idle
// ones; Pods without a fresh worker record (never registered, or silent) rank lowest.
func TestBusyWorkersAreDeletedLast(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	q := newQueue(t, ns, "scalein")
	newPool(t, ns, "workers", []string{q}, scalingOpts{min: 0, max: 5, target: 10, window: 1, cooldown: 600})
	send(t, ns, q, 30)
	waitReplicas(t, ns, "workers", 3, 30*time.Second)

	// The pool's Pods; their workers register as the SDK does (TASKER_WORKER_ID = "<namespace>/<Pod name>").
	// Pod names are unique per test run: tasker.workers is shared by the whole binary.
	labels := map[string]string{controllers.LabelWorkerPool: "workers"}
	busy, idle, unknown, stale := ns+"-busy", ns+"-idle", ns+"-unknown", ns+"-stale"
	for _, name := range []string{busy, idle, unknown, stale} {
		workerPod(t, ns, name, labels)
	}
	// A Pod of another pool in the same namespace is not touched.
	other := ns + "-other"
	workerPod(t, ns, other, map[string]string{controllers.LabelWorkerPool: "someone-else"})

	dq := queuescope.Namespaced(ns, q)
	heartbeat(t, controllers.WorkerID(ns, busy), []string{dq}, 3)
	heartbeat(t, controllers.WorkerID(ns, idle), []string{dq}, 0)
	heartbeat(t, controllers.WorkerID(ns, stale), []string{dq}, 2)
	heartbeat(t, controllers.WorkerID(ns, other), []string{dq}, 0)
	if _, err := dbPool.Exec(ctxFor(t, 10*time.Second),
		`UPDATE tasker.workers SET last_heartbeat_at = now() - interval '10 minutes' WHERE id = $1::text`, controllers.WorkerID(ns, stale)); err != nil {
		t.Fatal(err)
	}
	// No deletion costs while the pool only grows.
	if _, ok := deletionCost(t, ns, busy); ok {
		t.Fatalf("pod annotated before any scale-in")
	}

	// Backlog 30 → 10: proposal 1, a scale-in from 3 once the 1 s window has passed.
	purge(t, ns, q)
	send(t, ns, q, 10)
	waitReplicas(t, ns, "workers", 1, 30*time.Second)

	costs := map[string]int{}
	for _, name := range []string{busy, idle, unknown, stale} {
		c, ok := deletionCost(t, ns, name)
		if !ok {
			t.Fatalf("pod %s has no deletion cost after the scale-in", name)
		}
		costs[name] = c
	}
	t.Logf("deletion costs: busy %d, idle %d, unknown %d, stale %d", costs[busy], costs[idle], costs[unknown], costs[stale])
	if !(costs[busy] > costs[idle]) {
		t.Errorf("busy worker cost %d is not above the idle worker's %d", costs[busy], costs[idle])
	}
	if !(costs[idle] > costs[unknown]) {
		t.Errorf("idle worker cost %d is not above the unregistered pod's %d", costs[idle], costs[unknown])
	}
	if costs[stale] != costs[unknown] {
		t.Errorf("a worker silent for 10 minutes costs %d, want the unknown cost %d (its in_flight is not believed)",
			costs[stale], costs[unknown])
	}
	if costs[busy] != 3 || costs[idle] != 0 {
		t.Errorf("costs busy %d idle %d: want the number of steps in flight (3, 0)", costs[busy], costs[idle])
	}
	if _, ok := deletionCost(t, ns, other); ok {
		t.Errorf("the pod of another pool was annotated")
	}
}
