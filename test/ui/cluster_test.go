package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/devstack"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

// applySamples creates config/samples in ns (WorkerPool and TaskTemplate first, as the demo does) and returns
// the names of the Tasks.
func applySamples(t *testing.T, ns string) []string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "tasker_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("samples: %v", err)
	}
	sort.Slice(files, func(i, j int) bool { return kindRank(files[i]) < kindRank(files[j]) })
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tasker-db"}, StringData: map[string]string{"url": "unused"}}
	if err := env.Client.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	var tasks []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		obj.SetNamespace(ns)
		// Steps that wait for a signal get it up front (it is kept until they wait), as the demo sends it.
		for _, sig := range devstack.SampleSignals(obj) {
			a := devstack.SignalAction(sig)
			actions, _, _ := unstructured.NestedSlice(obj.Object, "spec", "actions")
			actions = append(actions, map[string]any{"id": a.ID, "type": string(a.Type), "signal": a.Signal, "reason": a.Reason})
			if err := unstructured.SetNestedSlice(obj.Object, actions, "spec", "actions"); err != nil {
				t.Fatal(err)
			}
		}
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("create %s: %v", f, err)
		}
		if obj.GetKind() == "Task" {
			tasks = append(tasks, obj.GetName())
		}
	}
	return tasks
}

// kindRank orders the sample files: WorkerPool, TaskTemplate, then Tasks.
func kindRank(file string) int {
	switch filepath.Base(file) {
	case "tasker_v1alpha1_workerpool.yaml":
		return 0
	case "tasker_v1alpha1_tasktemplate_report.yaml":
		return 1
	}
	return 2
}

// startWorker runs a worker of the SDK on ns's default queue until the test ends. Its handlers are the
// reference worker's as far as the samples use them: echo and sleep succeed, and fail fails its first
// inputs.failTimes attempts with inputs.message.
func startWorker(t *testing.T, ns, id string) {
	t.Helper()
	w, err := worker.New(dbPool, worker.Config{Queues: queuescope.Scope{}.DatabaseQueues(ns, []string{"default"}), ID: id,
		PollInterval: 100 * time.Millisecond, Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	succeed := func(_ context.Context, s worker.Step) (worker.Result, error) { return s.Inputs, nil }
	w.Handle("echo", succeed)
	w.Handle("sleep", succeed)
	w.Handle("fail", func(_ context.Context, s worker.Step) (worker.Result, error) {
		var in struct {
			FailTimes int    `json:"failTimes"`
			Message   string `json:"message"`
		}
		if err := s.DecodeInputs(&in); err != nil {
			return nil, worker.Permanent(err)
		}
		if s.Attempt <= in.FailTimes {
			return nil, errors.New(in.Message)
		}
		return map[string]bool{"charged": true}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker %s: %v", id, err)
		}
	})
}

// waitTask waits until the Task's status satisfies cond.
func waitTask(t *testing.T, ns, name string, d time.Duration, what string, cond func(*taskerv1alpha1.Task) bool) {
	t.Helper()
	testenv.WaitFor(t, d, fmt.Sprintf("Task %s/%s %s", ns, name, what), func() (bool, error) {
		var tk taskerv1alpha1.Task
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &tk); err != nil {
			return false, err
		}
		return cond(&tk), fmt.Errorf("phase %q, progress %s", tk.Status.Phase, tk.Status.Progress)
	})
}
