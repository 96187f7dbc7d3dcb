package webhook

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// fakeConditions answers as the engine would for the conditions it knows, or fails like an unreachable database.
type fakeConditions struct {
	problems map[string]string
	err      error
	asked    [][]string
}

func (f *fakeConditions) ConditionProblems(_ context.Context, conds []string) ([]string, error) {
	f.asked = append(f.asked, conds)
	if f.err != nil {
		return nil, f.err
	}
	out := make([]string, len(conds))
	for i, c := range conds {
		out[i] = f.problems[c]
	}
	return out, nil
}

func (f *fakeConditions) ForEachProblems(ctx context.Context, paths []string) ([]string, error) {
	return f.ConditionProblems(ctx, paths)
}

func conditionalTask() *taskerv1alpha1.Task {
	return &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Name: "t"}, Spec: taskerv1alpha1.TaskSpec{Steps: []taskerv1alpha1.StepSpec{
		{Name: "a", Handler: "h"},
		{Name: "b", Handler: "h", DependsOn: []string{"a"}, When: `$.deps.a.ok == true`},
		{Name: "c", Handler: "h", DependsOn: []string{"a"}, When: `$.deps.a`},
	}}}
}

func TestConditionsAreCheckedByTheDatabase(t *testing.T) {
	f := &fakeConditions{problems: map[string]string{`$.deps.a`: "must be a predicate"}}
	warnings, err := TaskValidator{Conditions: f}.ValidateCreate(context.Background(), conditionalTask())
	if err == nil || !strings.Contains(err.Error(), "spec.steps[2].when") || !strings.Contains(err.Error(), "must be a predicate") ||
		strings.Contains(err.Error(), "spec.steps[1]") || len(warnings) != 0 {
		t.Fatalf("ValidateCreate: %v, warnings %v", err, warnings)
	}
	if len(f.asked) != 1 || len(f.asked[0]) != 2 {
		t.Errorf("asked %v: want one question with the two conditions", f.asked)
	}
	tmpl := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: "tt"}}
	tmpl.Spec.Steps = conditionalTask().Spec.Steps
	if _, err := (TaskTemplateValidator{Conditions: f}).ValidateCreate(context.Background(), tmpl); err == nil ||
		!strings.Contains(err.Error(), "spec.steps[2].when") {
		t.Errorf("TaskTemplate: %v", err)
	}
}

func TestConditionsLeftToTheEngineWhenTheDatabaseIsAway(t *testing.T) {
	for name, v := range map[string]TaskValidator{
		"unreachable": {Conditions: &fakeConditions{err: errors.New("connection refused")}},
		"no database": {},
	} {
		warnings, err := v.ValidateCreate(context.Background(), conditionalTask())
		if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "checks them when it admits") &&
			!strings.Contains(warnings[0], "checked when the operator admits") {
			t.Errorf("%s: %v, warnings %v", name, err, warnings)
		}
	}
	// Without conditions, nothing is asked and nothing is said.
	f := &fakeConditions{}
	tk := conditionalTask()
	tk.Spec.Steps = tk.Spec.Steps[:1]
	if warnings, err := (TaskValidator{Conditions: f}).ValidateCreate(context.Background(), tk); err != nil || len(warnings) != 0 || len(f.asked) != 0 {
		t.Errorf("no conditions: %v, %v, asked %v", err, warnings, f.asked)
	}
}

type fakeKeys struct{ fakeConditions }

var _ ConcurrencyKeyChecker = (*fakeKeys)(nil)

func (*fakeKeys) ConcurrencyKeyProblem(_ context.Context, key string) (string, error) {
	if key == "$.(" {
		return "not a SQL/JSON path expression", nil
	}
	return "", nil
}

// A concurrency key PostgreSQL cannot parse is refused with its field path; without a checker that knows keys,
// the Task is let through with a warning (admission checks it).
func TestConcurrencyKeyIsChecked(t *testing.T) {
	task := &taskerv1alpha1.Task{Spec: taskerv1alpha1.TaskSpec{
		Steps:       []taskerv1alpha1.StepSpec{{Name: "a", Handler: "h"}},
		Concurrency: &taskerv1alpha1.ConcurrencySpec{Group: "g", Key: "$.("}}}
	_, err := TaskValidator{Conditions: &fakeKeys{}}.ValidateCreate(context.Background(), task)
	if err == nil || !strings.Contains(err.Error(), "spec.concurrency.key") {
		t.Fatalf("err = %v, want spec.concurrency.key refused", err)
	}
	task.Spec.Concurrency.Key = "$.context.customer"
	if _, err := (TaskValidator{Conditions: &fakeKeys{}}).ValidateCreate(context.Background(), task); err != nil {
		t.Fatalf("a good key: %v", err)
	}
	warnings, err := TaskValidator{}.ValidateCreate(context.Background(), task)
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "spec.concurrency.key") {
		t.Fatalf("without a checker: %v, %v", warnings, err)
	}
}
