package tasks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// createTasks creates n three-step Tasks on queue in ns with `workers` concurrent clients.
func createTasks(b *testing.B, ns, queue string, n, workers int) {
	b.Helper()
	err := testenv.CreateConcurrently(context.Background(), env.Client, n, workers, func(i int) client.Object {
		return &taskerv1alpha1.Task{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench-%05d", i)},
			Spec: taskerv1alpha1.TaskSpec{Queue: queue, Steps: []taskerv1alpha1.StepSpec{
				step("fetch", "echo"), step("process", "echo", "fetch"), step("store", "echo", "process")}},
		}
	})
	if err != nil {
		b.Fatal(err)
	}
}

// waitQueueLength waits until namespace ns's queue holds n messages (each admitted Task enqueues its one root
// step).
func waitQueueLength(b *testing.B, ns, queue string, n int64, d time.Duration) {
	b.Helper()
	deadline := time.Now().Add(d)
	for {
		var got int64
		err := dbPool.QueryRow(context.Background(), `SELECT queue_length FROM pgmq.metrics($1::text)`,
			queuescope.Namespaced(ns, queue)).Scan(&got)
		if err == nil && got >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("queue %s has %d messages after %s, want %d (err %v)", queue, got, d, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkTaskAdmission measures Tasks admitted per second: from the CR's creation to its root step in the
// queue, through the real apiserver, webhook, controller and database (no workers run).
func BenchmarkTaskAdmission(b *testing.B) {
	for b.Loop() {
		ns := newNamespaceB(b)
		queue := "admit_" + strings.ReplaceAll(ns, "-", "_")
		const n = 500
		start := time.Now()
		createTasks(b, ns, queue, n, 16)
		created := time.Since(start)
		waitQueueLength(b, ns, queue, n, 2*time.Minute)
		elapsed := time.Since(start)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "tasks/s")
		b.ReportMetric(float64(n)/created.Seconds(), "creates/s")
	}
}

func newNamespaceB(b *testing.B) string {
	b.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		b.Fatal(err)
	}
	return ns.Name
}
