package templates

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

var errMissing = errors.New("missing")

// fakeTemplates maps a template's name to the templates its steps run.
func fakeTemplates(runs map[string][]string) Getter {
	return func(_ context.Context, name string) (*taskerv1alpha1.TaskTemplate, error) {
		children, ok := runs[name]
		if !ok {
			return nil, errMissing
		}
		t := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}}
		t.Spec.Steps = append(t.Spec.Steps, taskerv1alpha1.StepSpec{Name: "own", Handler: "h"})
		for _, c := range children {
			t.Spec.Steps = append(t.Spec.Steps, taskerv1alpha1.StepSpec{Name: "run-" + c, Template: c})
		}
		return t, nil
	}
}

func steps(templates ...string) []taskerv1alpha1.StepSpec {
	var out []taskerv1alpha1.StepSpec
	for _, t := range templates {
		out = append(out, taskerv1alpha1.StepSpec{Name: "s-" + t, Template: t})
	}
	return out
}

func TestResolve(t *testing.T) {
	runs := map[string][]string{"a": {"b", "c"}, "b": {"c"}, "c": nil, "loop": {"loop2"}, "loop2": {"loop"},
		"self": {"self"}, "d1": {"d2"}, "d2": {"d3"}, "d3": {"d4"}, "d4": {"d5"}, "d5": {"d6"}, "d6": nil,
		"broken": {"gone"}}
	isMissing := func(err error) bool { return errors.Is(err, errMissing) }
	for _, tc := range []struct {
		name    string
		root    string
		steps   []taskerv1alpha1.StepSpec
		want    []string // templates found
		wantErr string
	}{
		{name: "none", steps: []taskerv1alpha1.StepSpec{{Name: "x", Handler: "h"}}},
		{name: "shared child read once", steps: steps("a", "c"), want: []string{"a", "b", "c"}},
		{name: "cycle", steps: steps("loop"), wantErr: "TaskTemplate loop -> loop2 -> loop runs itself"},
		{name: "runs itself", steps: steps("self"), wantErr: "self -> self"},
		{name: "root in the cycle", root: "c", steps: steps("a"), wantErr: "c -> a -> b -> c"},
		{name: "five deep", steps: steps("d2"), want: []string{"d2", "d3", "d4", "d5", "d6"}},
		{name: "six deep", steps: steps("d1"), wantErr: "nest at most 5 deep"},
		{name: "missing", steps: steps("broken"), wantErr: `TaskTemplate "gone" (run as a child workflow, via broken) not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found, err := Resolve(context.Background(), fakeTemplates(runs), isMissing, tc.root, tc.steps)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				var nf *NotFoundError
				if strings.Contains(tc.wantErr, "not found") != errors.As(err, &nf) {
					t.Errorf("err %v: NotFoundError %v", err, nf)
				}
				if !strings.Contains(tc.wantErr, "not found") && !errors.Is(err, ErrInvalid) {
					t.Errorf("err %v is not ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(found) != len(tc.want) {
				t.Errorf("found %d templates, want %v", len(found), tc.want)
			}
			for _, n := range tc.want {
				if found[n] == nil {
					t.Errorf("%s not found", n)
				}
			}
		})
	}
}
