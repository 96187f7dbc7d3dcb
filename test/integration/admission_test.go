// Package integration holds tests against the real kube-apiserver (envtest) with the project's CRDs and webhooks.
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	// Admission only: the webhooks run, the controllers do not (they would race these tests' updates).
	env, err = testenv.Start(testenv.Options{SkipOperator: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: ", err)
		os.Exit(1)
	}
	code := m.Run()
	env.Stop()
	os.Exit(code)
}

func newNamespace(t *testing.T) string { return env.NewNamespace(t, "t") }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func step(name, handler string, deps ...string) taskerv1alpha1.StepSpec {
	return taskerv1alpha1.StepSpec{Name: name, Handler: handler, DependsOn: deps}
}

func task(steps ...taskerv1alpha1.StepSpec) *taskerv1alpha1.Task {
	return &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "tk-"},
		Spec:       taskerv1alpha1.TaskSpec{Steps: steps},
	}
}

func withStep0(mutate func(*taskerv1alpha1.StepSpec)) *taskerv1alpha1.Task {
	t := task(step("a", "echo"), step("b", "echo", "a"))
	mutate(&t.Spec.Steps[0])
	return t
}

// cronTask is a valid hourly CronTask with one step, changed by mutate.
func cronTask(mutate func(*taskerv1alpha1.CronTask)) *taskerv1alpha1.CronTask {
	c := &taskerv1alpha1.CronTask{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "ctk-"},
		Spec: taskerv1alpha1.CronTaskSpec{Schedule: "@hourly",
			Task: taskerv1alpha1.CronTaskTaskSpec{Steps: []taskerv1alpha1.StepSpec{step("a", "echo")}}},
	}
	mutate(c)
	return c
}

func pool(mutate func(*taskerv1alpha1.WorkerPool)) *taskerv1alpha1.WorkerPool {
	p := &taskerv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "wp-"},
		Spec: taskerv1alpha1.WorkerPoolSpec{
			Queues:   []string{"default"},
			Database: &taskerv1alpha1.DatabaseSecretRef{SecretName: "db"},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "worker", Image: "worker:dev"}},
			}},
		},
	}
	mutate(p)
	return p
}

// TestAdmissionRejectsInvalidObjects creates each invalid object through the real apiserver (CRD schema, CEL
// rules and the validating webhook) and checks the rejection names the offending field.
func TestAdmissionRejectsInvalidObjects(t *testing.T) {
	ns := newNamespace(t)
	manySteps := make([]taskerv1alpha1.StepSpec, taskerv1alpha1.MaxSteps+1)
	for i := range manySteps {
		manySteps[i] = step(fmt.Sprintf("s%d", i), "echo")
	}
	cases := []struct {
		name string
		obj  client.Object
		// want are substrings the error must contain (the field path and the reason).
		want []string
	}{
		{"step name format", task(step("Bad_Name", "echo")),
			[]string{"spec.steps[0].name", "should match"}},
		{"duplicate step names", task(step("a", "echo"), step("a", "echo")),
			[]string{"spec.steps[1]", "Duplicate value"}},
		{"dependsOn unknown step", task(step("a", "echo"), step("b", "echo", "zz")),
			[]string{"spec.steps[1].dependsOn[0]", `unknown step "zz"`}},
		{"dependsOn itself", task(step("a", "echo", "a")),
			[]string{"spec.steps[0].dependsOn", "cannot depend on itself"}},
		{"dependsOn duplicate entries", task(step("a", "echo"), step("b", "echo", "a", "a")),
			[]string{"spec.steps[1].dependsOn[1]", "Duplicate value"}},
		{"empty handler", task(step("a", "")),
			[]string{"spec.steps[0].handler"}},
		{"more than 1000 steps", task(manySteps...),
			[]string{"spec.steps", "must have at most 1000 items"}},
		{"retry maxAttempts zero", withStep0(func(s *taskerv1alpha1.StepSpec) {
			s.Retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(0))}
		}), []string{"spec.steps[0].retry.maxAttempts", "greater than or equal to 1"}},
		{"retry maxAttempts too many", withStep0(func(s *taskerv1alpha1.StepSpec) {
			s.Retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(101))}
		}), []string{"spec.steps[0].retry.maxAttempts", "less than or equal to 100"}},
		{"backoff base out of range", withStep0(func(s *taskerv1alpha1.StepSpec) {
			s.Retry = &taskerv1alpha1.RetryPolicy{Backoff: &taskerv1alpha1.Backoff{Base: &metav1.Duration{Duration: 2 * time.Hour}}}
		}), []string{"spec.steps[0].retry.backoff.base", "between 10ms and 1h"}},
		{"backoff base above max", withStep0(func(s *taskerv1alpha1.StepSpec) {
			s.Retry = &taskerv1alpha1.RetryPolicy{Backoff: &taskerv1alpha1.Backoff{
				Base: &metav1.Duration{Duration: time.Minute}, Max: &metav1.Duration{Duration: time.Second}}}
		}), []string{"spec.steps[0].retry.backoff.base", "base must not be greater than max"}},
		{"backoff max below the default base", withStep0(func(s *taskerv1alpha1.StepSpec) {
			s.Retry = &taskerv1alpha1.RetryPolicy{Backoff: &taskerv1alpha1.Backoff{Max: &metav1.Duration{Duration: 500 * time.Millisecond}}}
		}), []string{"spec.steps[0].retry.backoff.base", "base must not be greater than max (base defaults to 1s)"}},
		{"timeout zero", withStep0(func(s *taskerv1alpha1.StepSpec) { s.TimeoutSeconds = ptr.To(int32(0)) }),
			[]string{"spec.steps[0].timeoutSeconds", "greater than or equal to 1"}},
		{"timeout above a week", withStep0(func(s *taskerv1alpha1.StepSpec) { s.TimeoutSeconds = ptr.To(int32(604801)) }),
			[]string{"spec.steps[0].timeoutSeconds", "less than or equal to 604800"}},
		{"task queue name", func() client.Object {
			t := task(step("a", "echo"))
			t.Spec.Queue = "Bad-Queue"
			return t
		}(), []string{"spec.queue", "should match"}},
		{"step queue name too long", withStep0(func(s *taskerv1alpha1.StepSpec) { s.Queue = strings.Repeat("q", 41) }),
			[]string{"spec.steps[0].queue"}},
		{"neither steps nor templateRef", task(),
			[]string{"spec", "exactly one of spec.steps or spec.templateRef"}},
		{"cycle a->b->c->a", task(step("a", "echo", "c"), step("b", "echo", "a"), step("c", "echo", "b"), step("d", "echo")),
			[]string{"spec.steps", "dependency cycle: a -> c -> b -> a"}},
		{"workerpool queue name", pool(func(p *taskerv1alpha1.WorkerPool) { p.Spec.Queues = []string{"ok", "not ok"} }),
			[]string{"spec.queues[1]", "should match"}},
		{"workerpool minReplicas above maxReplicas", pool(func(p *taskerv1alpha1.WorkerPool) {
			p.Spec.Scaling = taskerv1alpha1.ScalingSpec{MinReplicas: ptr.To(int32(5)), MaxReplicas: ptr.To(int32(2))}
		}), []string{"spec.scaling.minReplicas", "minReplicas must not be greater than maxReplicas"}},
		{"workerpool without queues", pool(func(p *taskerv1alpha1.WorkerPool) { p.Spec.Queues = nil }),
			[]string{"spec.queues", "Required value"}},
		// CEL in the CRD, so they hold with the webhook off.
		{"action result on a retry", func() client.Object {
			tk := task(step("a", "echo"))
			tk.Spec.Actions = []taskerv1alpha1.TaskAction{{ID: "1", Type: taskerv1alpha1.ActionRetry, Step: "a",
				Result: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}}
			return tk
		}(), []string{"spec.actions[0].result", "result is only allowed with type Complete"}},
		{"action inputs on a resolve", func() client.Object {
			tk := task(step("a", "echo"))
			tk.Spec.Actions = []taskerv1alpha1.TaskAction{{ID: "1", Type: taskerv1alpha1.ActionResolve, Step: "a",
				Inputs: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}}
			return tk
		}(), []string{"spec.actions[0].inputs", "inputs are only allowed with type Retry"}},
		{"workerpool name longer than a label value", pool(func(p *taskerv1alpha1.WorkerPool) {
			p.GenerateName, p.Name = "", strings.Repeat("w", 64)
		}), []string{"metadata.name: must be at most 63 characters"}},
		{"template cycle", &taskerv1alpha1.TaskTemplate{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "tkt-"},
			Spec:       taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{step("x", "echo", "y"), step("y", "echo", "x")}},
		}, []string{"spec.steps", "dependency cycle: x -> y -> x"}},
		{"template dependsOn unknown step", &taskerv1alpha1.TaskTemplate{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "tkt-"},
			Spec:       taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{step("x", "echo", "nope")}},
		}, []string{"spec.steps[0].dependsOn[0]", `unknown step "nope"`}},
		{"template step name format", &taskerv1alpha1.TaskTemplate{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "tkt-"},
			Spec:       taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{step("-x", "echo")}},
		}, []string{"spec.steps[0].name", "should match"}},
		{"crontask schedule", cronTask(func(c *taskerv1alpha1.CronTask) { c.Spec.Schedule = "0 0 31 13 *" }),
			[]string{"spec.schedule", "0 0 31 13 *"}},
		{"crontask time zone in the schedule", cronTask(func(c *taskerv1alpha1.CronTask) { c.Spec.Schedule = "CRON_TZ=UTC @daily" }),
			[]string{"spec.schedule", "use spec.timeZone"}},
		{"crontask time zone", cronTask(func(c *taskerv1alpha1.CronTask) { c.Spec.TimeZone = ptr.To("Europe/Atlantis") }),
			[]string{"spec.timeZone", "IANA"}},
		{"crontask concurrency policy", cronTask(func(c *taskerv1alpha1.CronTask) { c.Spec.ConcurrencyPolicy = "Queue" }),
			[]string{"spec.concurrencyPolicy", "Unsupported value"}},
		{"crontask steps and templateRef", cronTask(func(c *taskerv1alpha1.CronTask) {
			c.Spec.Task.TemplateRef = &taskerv1alpha1.TemplateReference{Name: "t"}
		}), []string{"spec.task", "exactly one of spec.task.steps or spec.task.templateRef"}},
		{"crontask step cycle", cronTask(func(c *taskerv1alpha1.CronTask) {
			c.Spec.Task.Steps = []taskerv1alpha1.StepSpec{step("x", "echo", "y"), step("y", "echo", "x")}
		}), []string{"spec.task.steps", "dependency cycle: x -> y -> x"}},
		{"crontask name too long", cronTask(func(c *taskerv1alpha1.CronTask) {
			c.GenerateName, c.Name = "", strings.Repeat("n", 53)
		}), []string{"at most 52 characters"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.obj.SetNamespace(ns)
			err := env.Client.Create(ctxT(t), tc.obj)
			if err == nil {
				t.Fatalf("created an invalid object; want an error containing %q", tc.want)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) {
				t.Fatalf("want an Invalid error, got %T: %v", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestAdmissionRejectsMutations covers the transition rules: what must not change after creation.
func TestAdmissionRejectsMutations(t *testing.T) {
	ns := newNamespace(t)
	ctx := ctxT(t)
	tk := task(step("a", "echo"), step("b", "echo", "a"))
	tk.Namespace = ns
	if err := env.Client.Create(ctx, tk); err != nil {
		t.Fatalf("create: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*taskerv1alpha1.Task)
		want   []string
	}{
		{"change a step's handler", func(t *taskerv1alpha1.Task) { t.Spec.Steps[1].Handler = "other" },
			[]string{"spec.steps", "immutable"}},
		{"add a step", func(t *taskerv1alpha1.Task) { t.Spec.Steps = append(t.Spec.Steps, step("c", "echo")) },
			[]string{"spec.steps", "immutable"}},
		{"change the queue", func(t *taskerv1alpha1.Task) { t.Spec.Queue = "other" },
			[]string{"spec.queue", "immutable"}},
		{"switch to a template", func(t *taskerv1alpha1.Task) {
			t.Spec.Steps = nil
			t.Spec.TemplateRef = &taskerv1alpha1.TemplateReference{Name: "x"}
		}, []string{"spec", "templateRef cannot be added or removed"}},
		{"un-cancel", nil, []string{"spec.cancel", "cannot be un-cancelled"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cur taskerv1alpha1.Task
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tk), &cur); err != nil {
				t.Fatal(err)
			}
			if tc.mutate == nil { // un-cancel: cancel first (allowed), then try to undo it
				cur.Spec.Cancel = true
				if err := env.Client.Update(ctx, &cur); err != nil {
					t.Fatalf("cancel: %v", err)
				}
				cur.Spec.Cancel = false
			} else {
				tc.mutate(&cur)
			}
			err := env.Client.Update(ctx, &cur)
			if err == nil {
				t.Fatalf("update accepted; want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}

	// What may change: actions and metadata.
	var cur taskerv1alpha1.Task
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tk), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Actions = append(cur.Spec.Actions, taskerv1alpha1.TaskAction{ID: "r1", Type: taskerv1alpha1.ActionRetry, Step: "a"})
	cur.Labels = map[string]string{"team": "data"}
	if err := env.Client.Update(ctx, &cur); err != nil {
		t.Fatalf("adding an action was rejected: %v", err)
	}
	cur.Spec.Actions = append(cur.Spec.Actions, taskerv1alpha1.TaskAction{ID: "r2", Type: taskerv1alpha1.ActionRetry, Step: "nope"})
	if err := env.Client.Update(ctx, &cur); err == nil || !strings.Contains(err.Error(), "spec.actions[1].step") {
		t.Fatalf("an action on an unknown step: want an error naming spec.actions[1].step, got %v", err)
	}
}

// TestSamplesAreAccepted applies every object in config/samples.
func TestSamplesAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "tasker_*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("samples: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &obj.Object); err != nil {
				t.Fatal(err)
			}
			obj.SetNamespace(ns)
			if err := env.Client.Create(ctxT(t), obj); err != nil {
				t.Fatalf("sample %s rejected: %v", filepath.Base(f), err)
			}
		})
	}
}

// TestLargestTaskIsAccepted checks that a Task at the step limit, with a wide fan-in, passes every rule (and so
// stays within the apiserver's CEL cost budget).
func TestLargestTaskIsAccepted(t *testing.T) {
	ns := newNamespace(t)
	steps := make([]taskerv1alpha1.StepSpec, taskerv1alpha1.MaxSteps)
	deps := make([]string, 0, taskerv1alpha1.MaxSteps-1)
	for i := 0; i < taskerv1alpha1.MaxSteps-1; i++ {
		steps[i] = step(fmt.Sprintf("s%d", i), "echo")
		deps = append(deps, steps[i].Name)
	}
	steps[taskerv1alpha1.MaxSteps-1] = step("fan-in", "echo", deps...)
	tk := task(steps...)
	tk.Namespace = ns
	if err := env.Client.Create(ctxT(t), tk); err != nil {
		t.Fatalf("a 1,000-step Task was rejected: %v", err)
	}
}
