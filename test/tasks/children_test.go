package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// Child workflows through the apiserver: a template that runs itself is refused when applied; a parent Task runs a
// child template per element of a list (forEach), the children's parameters taken from each element, and receives
// their outputs in order; a child whose step fails for good runs again as the step's retry policy allows, then
// fails the step and the Task, and a Retry action of the child's step (by its "<step>/<child step>" name) resumes
// it; a template edited after the parent was admitted changes nothing for it.
func TestChildWorkflows(t *testing.T) {
	ns := newNamespace(t)
	startWorkers(t, 2, ns, "default")
	ctx := context.Background()
	raw := func(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }

	// greet: its parameter name reaches its step, which echoes it; its output is what the step returned.
	greet := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "greet", Namespace: ns},
		Spec: taskerv1alpha1.TaskTemplateSpec{
			Parameters: []taskerv1alpha1.TemplateParameter{{Name: "name", Type: taskerv1alpha1.ParameterString, Required: true}},
			Steps: []taskerv1alpha1.StepSpec{
				{Name: "hello", Handler: "join"},
				{Name: "flaky", Handler: "fail", DependsOn: []string{"hello"}, Inputs: raw(`{"failTimes": 0}`),
					Retry: &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(1))}},
			},
			Outputs: map[string]string{"name": "$.context.params.name", "flaky": "$.steps.flaky.ok"},
		}}
	create(t, greet)

	// A template that runs itself is refused, naming the cycle.
	loop := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "loop", Namespace: ns},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "again", Template: "loop"}}}}
	if err := env.Client.Create(ctx, loop); err == nil || !strings.Contains(err.Error(), "TaskTemplate loop -> loop runs itself") {
		t.Errorf("a template running itself: %v", err)
	}
	// A missing argument is refused naming it.
	bad := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Name: "no-args", Namespace: ns},
		Spec: taskerv1alpha1.TaskSpec{Queue: "default", Steps: []taskerv1alpha1.StepSpec{{Name: "g", Template: "greet"}}}}
	if err := env.Client.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "spec.steps[0].arguments[name]: Required value") {
		t.Errorf("a child without its required argument: %v", err)
	}

	// forEach over the template: one child per name, outputs in order.
	each := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Name: "greet-all", Namespace: ns},
		Spec: taskerv1alpha1.TaskSpec{Queue: "default", Context: raw(`{"names": ["ann", "bob", "cy"]}`),
			Steps: []taskerv1alpha1.StepSpec{
				{Name: "greet", Template: "greet", ForEach: "$.context.names", ArgumentsFrom: map[string]string{"name": "$.item"}},
				{Name: "all", Handler: "join", DependsOn: []string{"greet"}},
			},
			Outputs: map[string]string{"greeted": "$.steps.all.greet[*].name"}}}
	create(t, each)
	got := waitPhase(t, ns, each.Name, taskerv1alpha1.TaskSucceeded, 60*time.Second)
	if got.Status.Outputs == nil || string(got.Status.Outputs.Raw) != `{"greeted":"ann"}` {
		// jsonb_path_query_first takes the first: the path selects a list, the output its first element.
		t.Errorf("status.outputs %v", got.Status.Outputs)
	}
	st, err := engine.New(dbPool, engine.Options{}).GetTask(ctx, got.Status.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	var all struct {
		Greet []struct{ Name, Flaky any } `json:"greet"`
	}
	if err := json.Unmarshal(st.Step("all").Result, &all); err != nil || len(all.Greet) != 3 ||
		all.Greet[0].Name != "ann" || all.Greet[1].Name != "bob" || all.Greet[2].Name != "cy" || all.Greet[0].Flaky != true {
		t.Errorf("all received %s (%v)", st.Step("all").Result, err)
	}

	// The template counts the Task that runs it as a child workflow among its users.
	waitFor(t, 30*time.Second, "greet's usedBy to count greet-all", func() (bool, error) {
		cur := &taskerv1alpha1.TaskTemplate{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(greet), cur); err != nil {
			return false, err
		}
		return cur.Status.UsedBy == 1, fmt.Errorf("usedBy %d", cur.Status.UsedBy)
	})

	// A failing child: flaky fails for good (permanent) on every run; the step runs the child twice, then fails.
	failing := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "failing", Namespace: ns},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{
			{Name: "work", Handler: "echo"},
			{Name: "flaky", Handler: "fail", DependsOn: []string{"work"}, Inputs: raw(`{"permanent": true, "message": "broke"}`)},
		}}}
	create(t, failing)
	parent := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Name: "parent", Namespace: ns},
		Spec: taskerv1alpha1.TaskSpec{Queue: "default", Steps: []taskerv1alpha1.StepSpec{
			{Name: "run", Template: "failing", Retry: &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(2))}},
			{Name: "after", Handler: "echo", DependsOn: []string{"run"}},
		}}}
	create(t, parent)
	failed := waitPhase(t, ns, parent.Name, taskerv1alpha1.TaskFailed, 60*time.Second)
	summary := map[string]taskerv1alpha1.StepSummary{}
	for _, s := range failed.Status.Steps {
		summary[s.Name] = s
	}
	if r := summary["run"]; r.State != "failed" || r.Attempts != 2 || !strings.Contains(r.Message, "child workflow failing failed: step flaky: broke") ||
		r.Child == nil || r.Child.Template != "failing" || r.Child.Steps.Failed != 1 {
		t.Errorf("run's summary: %+v (child %+v)", r, r.Child)
	}
	if summary["after"].State != "skipped" || summary["run/flaky"].State != "failed" {
		t.Errorf("after %q, run/flaky %q", summary["after"].State, summary["run/flaky"].State)
	}

	// The template is fixed; the admitted parent keeps its snapshot, so retrying the child's step by hand fails
	// again — then completing it by hand resumes the child, the step and the Task.
	cur := &taskerv1alpha1.TaskTemplate{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(failing), cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Steps[1].Inputs = raw(`{}`)
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	act := func(a taskerv1alpha1.TaskAction) {
		t.Helper()
		tk := getTask(t, ns, parent.Name)
		patch := client.MergeFrom(tk.DeepCopy())
		tk.Spec.Actions = append(tk.Spec.Actions, a)
		if err := env.Client.Patch(ctx, tk, patch); err != nil {
			t.Fatal(err)
		}
	}
	act(taskerv1alpha1.TaskAction{ID: "retry-flaky", Type: taskerv1alpha1.ActionRetry, Step: "run/flaky"})
	waitFor(t, 30*time.Second, "the retried child step to fail again", func() (bool, error) {
		tk := getTask(t, ns, parent.Name)
		for _, s := range tk.Status.Steps {
			if s.Name == "run/flaky" {
				return tk.Status.Phase == taskerv1alpha1.TaskFailed && s.Attempts == 2 && len(tk.Status.Actions) == 1,
					fmt.Errorf("phase %s, run/flaky %s after %d attempts, actions %+v", tk.Status.Phase, s.State,
						s.Attempts, tk.Status.Actions)
			}
		}
		return false, fmt.Errorf("no run/flaky in %+v", tk.Status.Steps)
	})
	act(taskerv1alpha1.TaskAction{ID: "complete-flaky", Type: taskerv1alpha1.ActionComplete, Step: "run/flaky",
		Result: raw(`{"fixed": true}`)})
	done := waitPhase(t, ns, parent.Name, taskerv1alpha1.TaskSucceeded, 30*time.Second)
	st, err = engine.New(dbPool, engine.Options{}).GetTask(ctx, done.Status.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if r := string(st.Step("run").Result); r != `{"flaky": {"fixed": true}}` {
		t.Errorf("run's result %s, want its child's last step's", r)
	}
}
