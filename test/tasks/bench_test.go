package tasks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// createTasks creates n three-step Tasks on queue in ns with `workers` concurrent clients.
func createTasks(b *testing.B, ns, queue string, n, workers int) {
	b.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tk := &taskerv1alpha1.Task{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench-%05d", i)},
					Spec: taskerv1alpha1.TaskSpec{Queue: queue, Steps: []taskerv1alpha1.StepSpec{
						step("fetch", "echo"), step("process", "echo", "fetch"), step("store", "echo", "process")}},
				}
				if err := env.Client.Create(context.Background(), tk); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// waitQueueLength waits until queue holds n messages (each admitted Task enqueues its one root step).
func waitQueueLength(b *testing.B, queue string, n int64, d time.Duration) {
	b.Helper()
	deadline := time.Now().Add(d)
	for {
		var got int64
		err := dbPool.QueryRow(context.Background(), `SELECT queue_length FROM pgmq.metrics($1::text)`, queue).Scan(&got)
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
		waitQueueLength(b, queue, n, 2*time.Minute)
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

// BenchmarkManagerRSS10kTasks runs the manager binary against the control plane and database, creates 10,000
// Tasks, waits until all are admitted, and reports the manager's resident memory.
func BenchmarkManagerRSS10kTasks(b *testing.B) {
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		b.Skip("needs the harness's own server")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig(), 0o600); err != nil {
		b.Fatal(err)
	}
	dbURL, err := pgtest.CreateDatabase("rss")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		// The test binary's in-process operator watches the same Tasks; the manager binary gets a database of its
		// own, so each admits every Task into its own database. That doubles the apiserver's load, not the
		// binary's memory, which is what is measured.
		cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--database-url="+dbURL,
			"--health-probe-bind-address=0", "--metrics-bind-address=0", "--webhook-port=0")
		cmd.Env = append(os.Environ(), "ENABLE_WEBHOOKS=false")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		ns := newNamespaceB(b)
		queue := "rss_" + strings.ReplaceAll(ns, "-", "_")
		const n = 10000
		createTasks(b, ns, queue, n, 16)
		// Wait for the binary's database to hold every Task.
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			var got int
			_ = conn.QueryRow(context.Background(), "SELECT count(*) FROM tasker.tasks").Scan(&got)
			if got >= n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d Tasks admitted by the manager binary", got, n)
			}
			time.Sleep(500 * time.Millisecond)
		}
		_ = conn.Close(context.Background())
		time.Sleep(5 * time.Second) // let status writes settle
		rss := readRSS(b, cmd.Process.Pid)
		b.ReportMetric(float64(rss)/(1<<20), "MiB-RSS")
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
}

func readRSS(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
