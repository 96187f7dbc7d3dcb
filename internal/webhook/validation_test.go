package webhook

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

func steps(pairs ...[]string) []taskerv1alpha1.StepSpec {
	out := make([]taskerv1alpha1.StepSpec, len(pairs))
	for i, p := range pairs {
		out[i] = taskerv1alpha1.StepSpec{Name: p[0], Handler: "echo", DependsOn: p[1:]}
	}
	return out
}

func TestValidateTask(t *testing.T) {
	big := &apiextensionsv1.JSON{Raw: []byte(`"` + strings.Repeat("x", taskerv1alpha1.MaxContextBytes) + `"`)}
	cases := []struct {
		name string
		spec taskerv1alpha1.TaskSpec
		want []string // one substring per expected error, in order; empty means valid
	}{
		{"valid diamond", taskerv1alpha1.TaskSpec{Steps: steps([]string{"a"}, []string{"b", "a"}, []string{"c", "a"}, []string{"d", "b", "c"})}, nil},
		{"template task has no steps to check", taskerv1alpha1.TaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: "t"}}, nil},
		{"unknown dependency", taskerv1alpha1.TaskSpec{Steps: steps([]string{"a", "x"})},
			[]string{`spec.steps[0].dependsOn[0]: Invalid value: step "a" depends on unknown step "x"`}},
		{"cycle", taskerv1alpha1.TaskSpec{Steps: steps([]string{"a", "b"}, []string{"b", "a"})},
			[]string{"spec.steps: Invalid value: dependency cycle: a -> b -> a"}},
		{"context too large", taskerv1alpha1.TaskSpec{Steps: steps([]string{"a"}), Context: big},
			[]string{"spec.context: Too long"}},
		{"inputs too large", taskerv1alpha1.TaskSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "a", Handler: "h", Inputs: big}}},
			[]string{"spec.steps[0].inputs: Too long"}},
		{"action on unknown step", taskerv1alpha1.TaskSpec{Steps: steps([]string{"a"}),
			Actions: []taskerv1alpha1.TaskAction{{ID: "1", Type: taskerv1alpha1.ActionRetry, Step: "b"}}},
			[]string{`spec.actions[0].step: Not found: "b"`}},
		{"result on a retry", taskerv1alpha1.TaskSpec{Steps: steps([]string{"a"}),
			Actions: []taskerv1alpha1.TaskAction{{ID: "1", Type: taskerv1alpha1.ActionRetry, Step: "a", Result: &apiextensionsv1.JSON{Raw: []byte(`{}`)}}}},
			[]string{"spec.actions[0].result: Forbidden: result is only allowed with type Complete"}},
		{"complete with result", taskerv1alpha1.TaskSpec{Steps: steps([]string{"a"}),
			Actions: []taskerv1alpha1.TaskAction{{ID: "1", Type: taskerv1alpha1.ActionComplete, Step: "a", Result: &apiextensionsv1.JSON{Raw: []byte(`{"ok":true}`)}}}},
			nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantErrors(t, ValidateTask(&taskerv1alpha1.Task{Spec: tc.spec}), tc.want)
		})
	}
}

func TestValidateTaskTemplate(t *testing.T) {
	tmpl := &taskerv1alpha1.TaskTemplate{Spec: taskerv1alpha1.TaskTemplateSpec{Steps: steps([]string{"a", "c"}, []string{"b", "a"}, []string{"c", "b"})}}
	errs := ValidateTaskTemplate(tmpl)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "dependency cycle: a -> c -> b -> a") {
		t.Fatalf("got %v, want one cycle error", errs)
	}
}

func TestValidateCronTask(t *testing.T) {
	zone := func(z string) *string { return &z }
	for _, tc := range []struct {
		name string
		spec taskerv1alpha1.CronTaskSpec
		want []string
	}{
		{"valid, with a zone", taskerv1alpha1.CronTaskSpec{Schedule: "30 2 * * 1-5", TimeZone: zone("Europe/Berlin"),
			Task: taskerv1alpha1.CronTaskTaskSpec{Steps: steps([]string{"a"})}}, nil},
		{"macro and a template", taskerv1alpha1.CronTaskSpec{Schedule: "@daily",
			Task: taskerv1alpha1.CronTaskTaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: "t"}}}, nil},
		{"bad schedule, bad zone, cycle", taskerv1alpha1.CronTaskSpec{Schedule: "0 25 * * *", TimeZone: zone("Europe/Atlantis"),
			Task: taskerv1alpha1.CronTaskTaskSpec{Steps: steps([]string{"a", "b"}, []string{"b", "a"})}},
			[]string{`spec.schedule: Invalid value: "0 25 * * *"`, `spec.timeZone: Invalid value: "Europe/Atlantis"`,
				"spec.task.steps: Invalid value: dependency cycle"}},
		{"zone in the schedule", taskerv1alpha1.CronTaskSpec{Schedule: "CRON_TZ=UTC @daily",
			Task: taskerv1alpha1.CronTaskTaskSpec{Steps: steps([]string{"a"})}}, []string{"use spec.timeZone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErrors(t, ValidateCronTask(&taskerv1alpha1.CronTask{Spec: tc.spec}), tc.want)
		})
	}
}

// wantErrors checks errs against one substring per expected error, in order (none: valid).
func wantErrors(t *testing.T, errs field.ErrorList, want []string) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors %v, want %d", len(errs), errs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Error(), w)
		}
	}
}
