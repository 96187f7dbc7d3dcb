package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/utils/ptr"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	return s
}

// storedTask is newTestTask as the apiserver stores it: with the CRD's defaults.
func storedTask(t *testing.T, mutate ...func(*taskerv1alpha1.Task)) *taskerv1alpha1.Task {
	t.Helper()
	tk := newTestTask("t", mutate...)
	applyCRDDefaults(t, testScheme(), tk)
	return tk
}

func withBackoff(b taskerv1alpha1.Backoff) func(*taskerv1alpha1.Task) {
	return func(tk *taskerv1alpha1.Task) {
		tk.Spec.Steps[0].Retry = &taskerv1alpha1.RetryPolicy{Backoff: &b}
	}
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// A step that sets nothing runs with the documented defaults (docs/tasks.md): the CRD schema's, passed through,
// and the backoff max the operator derives.
func TestEngineTaskSpecPassesTheSchemaDefaultsThrough(t *testing.T) {
	spec, err := engineTaskSpec(storedTask(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := engine.RetryPolicy{MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 5 * time.Minute, Jitter: 0.2}
	for _, s := range spec.Steps {
		if s.Timeout != time.Hour || s.Retry != want {
			t.Errorf("step %s: timeout %s, retry %+v; want 1h and %+v", s.Name, s.Timeout, s.Retry, want)
		}
	}
}

func TestEngineStepSpecRetryPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*taskerv1alpha1.Task)
		want   engine.RetryPolicy
	}{
		{"max defaults to 5m", withBackoff(taskerv1alpha1.Backoff{Base: duration(2 * time.Second)}),
			engine.RetryPolicy{MaxAttempts: 3, BackoffBase: 2 * time.Second, BackoffMax: 5 * time.Minute, Jitter: 0.2}},
		{"max defaults to a larger base", withBackoff(taskerv1alpha1.Backoff{Base: duration(10 * time.Minute)}),
			engine.RetryPolicy{MaxAttempts: 3, BackoffBase: 10 * time.Minute, BackoffMax: 10 * time.Minute, Jitter: 0.2}},
		{"max as given", withBackoff(taskerv1alpha1.Backoff{Max: duration(time.Minute)}),
			engine.RetryPolicy{MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: time.Minute, Jitter: 0.2}},
		{"jitter 0 is none", withBackoff(taskerv1alpha1.Backoff{JitterPercent: ptr.To(int32(0))}),
			engine.RetryPolicy{MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 5 * time.Minute, Jitter: engine.NoJitter}},
		{"jitter 50", withBackoff(taskerv1alpha1.Backoff{JitterPercent: ptr.To(int32(50))}),
			engine.RetryPolicy{MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 5 * time.Minute, Jitter: 0.5}},
		{"attempts only", func(tk *taskerv1alpha1.Task) {
			tk.Spec.Steps[0].Retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(1))}
		}, engine.RetryPolicy{MaxAttempts: 1, BackoffBase: time.Second, BackoffMax: 5 * time.Minute, Jitter: 0.2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := engineTaskSpec(storedTask(t, tc.mutate), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := spec.Steps[0].Retry; got != tc.want {
				t.Errorf("retry %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEngineTaskSpecQueue(t *testing.T) {
	tmpl := func(queue string) *taskerv1alpha1.TaskTemplate {
		tt := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "tmpl", Namespace: "ns"},
			Spec: taskerv1alpha1.TaskTemplateSpec{Queue: queue, Steps: []taskerv1alpha1.StepSpec{{Name: "x", Handler: "h"}}}}
		applyCRDDefaults(t, testScheme(), tt)
		return tt
	}
	fromTemplate := func(queue string) func(*taskerv1alpha1.Task) {
		return func(tk *taskerv1alpha1.Task) {
			tk.Spec.Steps, tk.Spec.Queue, tk.Spec.TemplateRef = nil, queue, &taskerv1alpha1.TemplateReference{Name: "tmpl"}
		}
	}
	for _, tc := range []struct {
		name string
		task *taskerv1alpha1.Task
		tmpl *taskerv1alpha1.TaskTemplate
		want string
	}{
		{"the Task's", storedTask(t), nil, "q"},
		{"default", storedTask(t, func(tk *taskerv1alpha1.Task) { tk.Spec.Queue = "" }), nil, taskerv1alpha1.DefaultQueue},
		{"the Task's over the template's", storedTask(t, fromTemplate("mine")), tmpl("theirs"), "mine"},
		{"the template's", storedTask(t, fromTemplate("")), tmpl("theirs"), "theirs"},
		{"default with a template", storedTask(t, fromTemplate("")), tmpl(""), taskerv1alpha1.DefaultQueue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := engineTaskSpec(tc.task, tc.tmpl, nil)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Queue != tc.want {
				t.Errorf("queue %q, want %q", spec.Queue, tc.want)
			}
		})
	}
}

// A step without its schema defaults comes from a CRD older than the operator: refused, naming the field, not
// admitted with the engine's defaults (no timeout at all).
func TestEngineTaskSpecRefusesStepsWithoutTheSchemaDefaults(t *testing.T) {
	tk := storedTask(t)
	tk.Spec.Steps[1].TimeoutSeconds = nil
	_, err := engineTaskSpec(tk, nil, nil)
	if !errors.Is(err, errCRDPredatesDefaults) || !strings.Contains(err.Error(), "spec.steps[1].timeoutSeconds is not set") {
		t.Errorf("error %v, want errCRDPredatesDefaults naming spec.steps[1].timeoutSeconds", err)
	}

	tmpl := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "ns"},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "x", Handler: "h"}}}}
	applyCRDDefaults(t, testScheme(), tmpl)
	tmpl.Spec.Steps[0].Retry.Backoff.JitterPercent = nil
	tk = storedTask(t, func(tk *taskerv1alpha1.Task) {
		tk.Spec.Steps, tk.Spec.TemplateRef = nil, &taskerv1alpha1.TemplateReference{Name: "old"}
	})
	_, err = engineTaskSpec(tk, tmpl, nil)
	if !errors.Is(err, errCRDPredatesDefaults) ||
		!strings.Contains(err.Error(), `TaskTemplate "old": spec.steps[0].retry.backoff.jitterPercent is not set`) {
		t.Errorf("error %v, want errCRDPredatesDefaults naming the template's field", err)
	}
}

func TestEngineStepSpecDelays(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC))
	spec, err := engineTaskSpec(storedTask(t, func(tk *taskerv1alpha1.Task) {
		tk.Spec.Steps[0].DelaySeconds = ptr.To(int32(90))
		tk.Spec.Steps[1].NotBefore = &at
	}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := spec.Steps[0], spec.Steps[1]
	if a.Delay != 90*time.Second || !a.NotBefore.IsZero() || b.Delay != 0 || !b.NotBefore.Equal(at.Time) {
		t.Errorf("a: delay %s, not before %s; b: delay %s, not before %s", a.Delay, a.NotBefore, b.Delay, b.NotBefore)
	}
}
