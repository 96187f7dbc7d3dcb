package webhook

import (
	"context"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

func jsonOf(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }

// A Task's arguments are checked against its template's parameters when it is created (not on updates: the
// template may change since); a template not there yet is a warning, not a refusal. CronTasks' too.
func TestArgumentsAreCheckedAgainstTheTemplate(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := taskerv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	tmpl := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "ns"},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "a", Handler: "h"}},
			Parameters: []taskerv1alpha1.TemplateParameter{
				{Name: "region", Type: taskerv1alpha1.ParameterString, Required: true},
				{Name: "days", Type: taskerv1alpha1.ParameterInteger, Default: jsonOf(`7`)},
			}}}
	v := TaskValidator{Templates: fake.NewClientBuilder().WithScheme(scheme).WithObjects(tmpl).Build()}
	task := func(ref, args, ctx string) *taskerv1alpha1.Task {
		tk := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"},
			Spec: taskerv1alpha1.TaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: ref}}}
		if args != "" {
			tk.Spec.Arguments = jsonOf(args)
		}
		if ctx != "" {
			tk.Spec.Context = jsonOf(ctx)
		}
		return tk
	}
	for _, tc := range []struct {
		name, ref, args, ctx string
		err, warning         string
	}{
		{name: "fits", ref: "report", args: `{"region":"eu"}`},
		{name: "missing required", ref: "report", args: `{"days":3}`, err: `spec.arguments[region]: Required value`},
		{name: "unknown and mistyped", ref: "report", args: `{"region":"eu","days":"x","weeks":2}`,
			err: `[spec.arguments[weeks]: Unsupported value: "weeks": supported values: "days", "region", spec.arguments[days]: Invalid value: "\"x\"": must be an integer]`},
		{name: "params in the context", ref: "report", args: `{"region":"eu"}`, ctx: `{"params":{}}`,
			err: `spec.context.params: Invalid value: "": reserved for the template's parameters`},
		{name: "no template yet", ref: "later", args: `{"anything":1}`, warning: `TaskTemplate "later" does not exist (yet)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warnings, err := v.ValidateCreate(context.Background(), task(tc.ref, tc.args, tc.ctx))
			if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if tc.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.warning)) {
				t.Errorf("warnings %q, want %q", warnings, tc.warning)
			}
		})
	}
	// Updates of an admitted Task are not held to the template's current parameters.
	if _, err := v.ValidateUpdate(context.Background(), nil, task("report", `{}`, "")); err != nil {
		t.Errorf("update: %v", err)
	}
	ct := &taskerv1alpha1.CronTask{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}, Spec: taskerv1alpha1.CronTaskSpec{
		Schedule: "@daily", Task: taskerv1alpha1.CronTaskTaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: "report"},
			Arguments: jsonOf(`{"region":1}`)}}}
	_, err := CronTaskValidator{Templates: v.Templates}.ValidateCreate(context.Background(), ct)
	if err == nil || !strings.Contains(err.Error(), `spec.task.arguments[region]: Invalid value: "1": must be a string`) {
		t.Errorf("CronTask: %v", err)
	}
}
