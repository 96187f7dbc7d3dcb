package tracing

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"go.opentelemetry.io/otel/trace"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/pkg/tracing"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

// startWorker runs a worker of the Go SDK on queue (a Task queue of namespace ns) with a tracer provider of its
// own, made from the environment as cmd/worker's is, under service name id. The function it returns stops the
// worker and flushes its spans (at the end of the test at the latest).
func startWorker(t *testing.T, id, ns, queue string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tp, err := tracing.NewProvider(ctx, id)
	if err != nil || tp == nil {
		t.Fatalf("tracer provider of %s: %v (nil: %v)", id, err, tp == nil)
	}
	w, err := worker.Open(ctx, dbURL, worker.Config{
		Queues:         []string{queuescope.Scope{}.DatabaseQueue(ns, queue)},
		ID:             id,
		Slots:          2,
		DrainTimeout:   5 * time.Second,
		PollInterval:   100 * time.Millisecond,
		TracerProvider: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The handler makes a span of its own from its context, as an HTTP or database client instrumented with
	// OpenTelemetry would: it must be a child of the step's span.
	w.Handle("traced", func(ctx context.Context, s worker.Step) (worker.Result, error) {
		_, sp := trace.SpanFromContext(ctx).TracerProvider().Tracer("test").Start(ctx, "work "+s.Name)
		sp.End()
		return map[string]string{"step": s.Name}, nil
	})
	w.Handle("flaky", func(_ context.Context, s worker.Step) (worker.Result, error) {
		if s.Attempt == 1 {
			return nil, errors.New("first attempts fail")
		}
		return nil, nil
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker %s: %v", id, err)
			}
			w.Close()
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			if err := tp.Shutdown(sctx); err != nil {
				t.Errorf("flush the spans of %s: %v", id, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// diamond is a → (b, c) → d; a and d go to queue "left", b and c to "right", so that each of the two workers
// runs two of the steps.
func diamond(ns string, annotations map[string]string) *taskerv1alpha1.Task {
	return &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: "diamond", Namespace: ns, Annotations: annotations},
		Spec: taskerv1alpha1.TaskSpec{Queue: "left", Steps: []taskerv1alpha1.StepSpec{
			{Name: "a", Handler: "traced"},
			{Name: "b", Handler: "traced", Queue: "right", DependsOn: []string{"a"}},
			{Name: "c", Handler: "traced", Queue: "right", DependsOn: []string{"a"}},
			{Name: "d", Handler: "traced", DependsOn: []string{"b", "c"}},
		}},
	}
}

// runDiamond runs a diamond Task to success on two workers and returns it and the spans of its trace (those
// with the trace id of its task span), once all have arrived: the task span, the reconcile that admitted it,
// four step spans and the four handler spans under them.
func runDiamond(t *testing.T, annotations map[string]string) (*taskerv1alpha1.Task, span, []span) {
	t.Helper()
	ns := env.NewNamespace(t, "trace")
	stopLeft := startWorker(t, "worker-left", ns, "left")
	stopRight := startWorker(t, "worker-right", ns, "right")
	task := diamond(ns, annotations)
	ctx := context.Background()
	if err := env.Client.Create(ctx, task); err != nil {
		t.Fatalf("create Task: %v", err)
	}
	waitFor(t, time.Minute, "the Task succeeds", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(task), task)
		return task.Status.Phase == taskerv1alpha1.TaskSucceeded, err
	})
	stopLeft() // and flush their spans, and the operator's
	stopRight()
	flush(t)

	name := "task " + ns + "/diamond"
	var root span
	var all []span
	waitFor(t, 30*time.Second, "the Task's spans arrive", func() (bool, error) {
		roots := rcv.received(func(s span) bool { return s.name == name })
		if len(roots) == 0 {
			return false, nil
		}
		if len(roots) > 1 {
			t.Fatalf("%d task spans for one Task: %+v", len(roots), roots)
		}
		root = roots[0]
		all = rcv.received(func(s span) bool { return s.traceID == root.traceID })
		steps, work := 0, 0
		for _, s := range all {
			switch {
			case s.attrs["tasker.step.outcome"] != "":
				steps++
			case len(s.name) > 5 && s.name[:5] == "work ":
				work++
			}
		}
		return steps == 4 && work == 4, nil
	})
	return task, root, all
}

func TestDiamondTaskTrace(t *testing.T) {
	task, root, all := runDiamond(t, nil)
	if root.parentSpanID != "" {
		t.Errorf("the task span has parent %s; want none (the root of the Task's trace)", root.parentSpanID)
	}
	if root.service != "tasker-operator" {
		t.Errorf("the task span comes from %q, want tasker-operator", root.service)
	}
	checkTrace(t, task, root, all)
}

func TestTraceparentAnnotationContinuesTrace(t *testing.T) {
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	task, root, all := runDiamond(t, map[string]string{
		taskerv1alpha1.TraceParentAnnotation: "00-" + traceID + "-" + parentID + "-01",
	})
	if root.traceID != traceID || root.parentSpanID != parentID {
		t.Errorf("task span in trace %s under %s; want trace %s under the annotation's span %s", root.traceID,
			root.parentSpanID, traceID, parentID)
	}
	checkTrace(t, task, root, all)
}

// checkTrace checks the spans of a diamond Task's trace under its task span root.
func checkTrace(t *testing.T, task *taskerv1alpha1.Task, root span, all []span) {
	t.Helper()
	byID := map[string]span{}
	for _, s := range all {
		byID[s.spanID] = s
	}
	taskID := strconv.FormatInt(task.Status.TaskID, 10)

	// The operator: the reconcile that admitted the Task is the task span's child, and the admission (an engine
	// call) the reconcile's.
	var reconcile, admit *span
	for i, s := range all {
		switch {
		case s.name == "reconcile Task" && s.parentSpanID == root.spanID:
			reconcile = &all[i]
		case s.name == "tasker.admit":
			admit = &all[i]
		}
	}
	switch {
	case reconcile == nil:
		t.Errorf("no reconcile span under the task span")
	case reconcile.service != "tasker-operator":
		t.Errorf("reconcile span from %q", reconcile.service)
	case admit == nil:
		t.Errorf("no tasker.admit span in the trace")
	case admit.parentSpanID != reconcile.spanID:
		t.Errorf("tasker.admit's parent is %q, want the reconcile %s", byID[admit.parentSpanID].name, reconcile.spanID)
	case admit.attrs["tasker.task.id"] != taskID || admit.attrs["tasker.task.created"] != "true":
		t.Errorf("tasker.admit attributes %v, want task %s created", admit.attrs, taskID)
	}
	if root.attrs["tasker.task.id"] != taskID || root.attrs["tasker.task.admitted"] != "true" {
		t.Errorf("task span attributes %v, want task id %s, admitted", root.attrs, taskID)
	}

	// The workers: one span per step attempt, a child of the task span, with the handler's own span under it.
	want := map[string]struct{ worker, queue, deps string }{
		"a": {"worker-left", "left", "[]"},
		"b": {"worker-right", "right", "[a]"},
		"c": {"worker-right", "right", "[a]"},
		"d": {"worker-left", "left", "[b c]"},
	}
	services := map[string]bool{}
	for _, s := range all {
		if s.attrs["tasker.step.outcome"] == "" {
			continue
		}
		name := s.attrs["tasker.step.name"]
		w, ok := want[name]
		if !ok {
			t.Errorf("unexpected step span %q: %v", s.name, s.attrs)
			continue
		}
		delete(want, name)
		services[s.service] = true
		if s.name != "step "+name || s.parentSpanID != root.spanID || s.service != w.worker {
			t.Errorf("step span %q from %q under %q; want \"step %s\" from %s under the task span", s.name, s.service,
				byID[s.parentSpanID].name, name, w.worker)
		}
		if s.kind.String() != "SPAN_KIND_CONSUMER" {
			t.Errorf("step %s: span kind %s, want consumer", name, s.kind)
		}
		for k, v := range map[string]string{
			"tasker.task.id": taskID, "tasker.step.handler": "traced", "tasker.step.attempt": "1",
			"tasker.worker.id": w.worker, "tasker.step.outcome": "succeeded", "tasker.step.dependencies": w.deps,
		} {
			if s.attrs[k] != v {
				t.Errorf("step %s: %s = %q, want %q", name, k, s.attrs[k], v)
			}
		}
		if q := s.attrs["tasker.queue"]; q != (queuescope.Scope{}).DatabaseQueue(task.Namespace, w.queue) {
			t.Errorf("step %s: queue %q, want the database queue of %q", name, q, w.queue)
		}
		if wait, err := strconv.ParseFloat(s.attrs["tasker.step.queue_wait_ms"], 64); err != nil || wait < 0 {
			t.Errorf("step %s: queue wait %q, want a duration in ms", name, s.attrs["tasker.step.queue_wait_ms"])
		}
		if s.attrs["tasker.step.id"] == "" || s.statusError {
			t.Errorf("step %s: attributes %v, error status %v", name, s.attrs, s.statusError)
		}
		// The handler's span nests under the step's.
		work := rcv.received(func(x span) bool { return x.name == "work "+name && x.traceID == root.traceID })
		if len(work) != 1 || work[0].parentSpanID != s.spanID {
			t.Errorf("step %s: handler spans %+v, want one under the step span %s", name, work, s.spanID)
		}
	}
	if len(want) > 0 {
		t.Errorf("no span for steps %v", want)
	}
	if got := slices.Sorted(maps.Keys(services)); !slices.Equal(got, []string{"worker-left", "worker-right"}) {
		t.Errorf("step spans from %v, want both workers", got)
	}
}

// A retried step has a span per attempt in the Task's trace: the failed one with its outcome and error status.
func TestRetriedStepHasASpanPerAttempt(t *testing.T) {
	ns := env.NewNamespace(t, "retry")
	stop := startWorker(t, "worker-retry", ns, "left")
	task := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: "flaky", Namespace: ns},
		Spec: taskerv1alpha1.TaskSpec{Queue: "left", Steps: []taskerv1alpha1.StepSpec{{Name: "f", Handler: "flaky",
			Retry: &taskerv1alpha1.RetryPolicy{Backoff: &taskerv1alpha1.Backoff{Base: &metav1.Duration{Duration: 100 * time.Millisecond}}}}}},
	}
	ctx := context.Background()
	if err := env.Client.Create(ctx, task); err != nil {
		t.Fatalf("create Task: %v", err)
	}
	waitFor(t, time.Minute, "the Task succeeds", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(task), task)
		return task.Status.Phase == taskerv1alpha1.TaskSucceeded, err
	})
	stop()
	flush(t)
	var root span
	var attempts map[string]span
	waitFor(t, 30*time.Second, "the Task's spans arrive", func() (bool, error) {
		roots := rcv.received(func(s span) bool { return s.name == "task "+ns+"/flaky" })
		if len(roots) != 1 {
			return false, nil
		}
		root = roots[0]
		attempts = map[string]span{}
		for _, s := range rcv.received(func(s span) bool { return s.traceID == root.traceID && s.name == "step f" }) {
			attempts[s.attrs["tasker.step.attempt"]] = s
		}
		return len(attempts) == 2, nil
	})
	first, second := attempts["1"], attempts["2"]
	if first.attrs["tasker.step.outcome"] != "retrying" || !first.statusError || first.parentSpanID != root.spanID {
		t.Errorf("attempt 1: outcome %q, error status %v, parent %s; want retrying, error, the task span %s",
			first.attrs["tasker.step.outcome"], first.statusError, first.parentSpanID, root.spanID)
	}
	if second.attrs["tasker.step.outcome"] != "succeeded" || second.statusError || second.parentSpanID != root.spanID {
		t.Errorf("attempt 2: outcome %q, error status %v, parent %s; want succeeded, no error, the task span %s",
			second.attrs["tasker.step.outcome"], second.statusError, second.parentSpanID, root.spanID)
	}
}
