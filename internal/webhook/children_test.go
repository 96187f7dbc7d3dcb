package webhook

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// Steps that run child workflows are checked against the templates they name: a template reaching itself is
// refused (on a TaskTemplate too), and so are arguments that do not fit the child's parameters; a template not
// there yet is a warning.
func TestChildWorkflowsAreChecked(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := taskerv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	tmpl := func(name string, steps ...taskerv1alpha1.StepSpec) *taskerv1alpha1.TaskTemplate {
		return &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec: taskerv1alpha1.TaskTemplateSpec{Steps: steps, Parameters: []taskerv1alpha1.TemplateParameter{
				{Name: "region", Type: taskerv1alpha1.ParameterString, Required: true}}}}
	}
	leaf := tmpl("leaf", taskerv1alpha1.StepSpec{Name: "a", Handler: "h"})
	loopA := tmpl("loop-a", taskerv1alpha1.StepSpec{Name: "b", Template: "loop-b", Arguments: jsonOf(`{"region":"eu"}`)})
	loopB := tmpl("loop-b", taskerv1alpha1.StepSpec{Name: "a", Template: "loop-a", Arguments: jsonOf(`{"region":"eu"}`)})
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(leaf, loopA, loopB).Build()
	v := TaskValidator{Templates: reader}
	task := func(s taskerv1alpha1.StepSpec) *taskerv1alpha1.Task {
		return &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"},
			Spec: taskerv1alpha1.TaskSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "first", Handler: "h"}, s}}}
	}
	for _, tc := range []struct {
		name         string
		step         taskerv1alpha1.StepSpec
		err, warning string
	}{
		{name: "fits", step: taskerv1alpha1.StepSpec{Name: "run", Template: "leaf", Arguments: jsonOf(`{"region":"eu"}`)}},
		{name: "argument given later", step: taskerv1alpha1.StepSpec{Name: "run", Template: "leaf",
			ArgumentsFrom: map[string]string{"region": "$.deps.first.region"}}},
		{name: "required missing", step: taskerv1alpha1.StepSpec{Name: "run", Template: "leaf"},
			err: "spec.steps[1].arguments[region]: Required value"},
		{name: "unknown argumentsFrom", step: taskerv1alpha1.StepSpec{Name: "run", Template: "leaf",
			Arguments: jsonOf(`{"region":"eu"}`), ArgumentsFrom: map[string]string{"zone": "$.context.zone"}},
			err: `spec.steps[1].argumentsFrom[zone]: Unsupported value: "zone"`},
		{name: "cycle", step: taskerv1alpha1.StepSpec{Name: "run", Template: "loop-a", Arguments: jsonOf(`{"region":"eu"}`)},
			err: "TaskTemplate loop-a -> loop-b -> loop-a runs itself as a child workflow"},
		{name: "not there yet", step: taskerv1alpha1.StepSpec{Name: "run", Template: "later"},
			warning: `TaskTemplate "later" (run as a child workflow) not found`},
		{name: "arguments without template", step: taskerv1alpha1.StepSpec{Name: "run", Handler: "h",
			Arguments: jsonOf(`{}`)}, err: "spec.steps[1].arguments: Forbidden: arguments give a child workflow's parameters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warnings, err := v.ValidateCreate(context.Background(), task(tc.step))
			if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if tc.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.warning)) {
				t.Errorf("warnings %q, want %q", warnings, tc.warning)
			}
		})
	}

	// A template that would run itself is refused when it is applied.
	self := tmpl("self", taskerv1alpha1.StepSpec{Name: "again", Template: "self", Arguments: jsonOf(`{"region":"eu"}`)})
	_, err := TaskTemplateValidator{Templates: reader}.ValidateCreate(context.Background(), self)
	if err == nil || !strings.Contains(err.Error(), "TaskTemplate self -> self runs itself") {
		t.Errorf("a template running itself: %v", err)
	}
}
