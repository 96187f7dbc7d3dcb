// Package operatorbench measures the manager binary as it ships: its memory with many Task CRs present. The
// control plane runs without an in-process operator, so the binary is the only one reconciling.
package operatorbench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() == "" {
		return m.Run() // only benchmarks here: start nothing for a plain `go test ./...`
	}
	teardown, err := pgtest.Setup(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer teardown()
	env, err = testenv.Start(testenv.Options{SkipOperator: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	return m.Run()
}

// BenchmarkManagerRSS10kTasks runs the manager binary against the control plane and a database, creates 10,000
// three-step Tasks, waits until the binary admitted all of them, and reports its resident memory.
func BenchmarkManagerRSS10kTasks(b *testing.B) {
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
	for b.Loop() {
		dbURL, err := pgtest.CreateDatabase("rss")
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--database-url="+dbURL,
			"--health-probe-bind-address=0", "--metrics-bind-address=0")
		cmd.Env = append(os.Environ(), "ENABLE_WEBHOOKS=false")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		ns := env.NewNamespace(b, "rss")
		const n = 10000
		start := time.Now()
		createTasks(b, ns, n, 16)
		created := time.Since(start)
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
		admitted := time.Since(start)
		_ = conn.Close(context.Background())
		time.Sleep(5 * time.Second) // let the last status writes settle
		b.ReportMetric(float64(readRSS(b, cmd.Process.Pid))/(1<<20), "MiB-RSS")
		b.ReportMetric(float64(n)/created.Seconds(), "creates/s")
		b.ReportMetric(float64(n)/admitted.Seconds(), "admitted/s")
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
}

func createTasks(b *testing.B, ns string, n, workers int) {
	b.Helper()
	err := testenv.CreateConcurrently(context.Background(), env.Client, n, workers, func(i int) client.Object {
		return &taskerv1alpha1.Task{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("t-%05d", i)},
			Spec: taskerv1alpha1.TaskSpec{Steps: []taskerv1alpha1.StepSpec{
				{Name: "fetch", Handler: "echo"},
				{Name: "process", Handler: "echo", DependsOn: []string{"fetch"}},
				{Name: "store", Handler: "echo", DependsOn: []string{"process"}},
			}},
		}
	})
	if err != nil {
		b.Fatal(err)
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
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
