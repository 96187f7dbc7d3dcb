// Package templates resolves the TaskTemplates a workflow's steps run as child workflows (StepSpec.Template),
// recursively, for the Task controller (which snapshots them into the admitted task) and the admission webhook
// (which refuses a cycle through templates when a Task or TaskTemplate is applied).
package templates

import (
	"context"
	"errors"
	"fmt"
	"strings"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// MaxDepth is how deep child workflows nest (a child's step running a child ...), as the engine's MaxChildDepth.
const MaxDepth = 5

// Getter reads the TaskTemplate of that name (in the workflow's namespace). Its error for a template that does not
// exist must satisfy the caller's notion of not found (Resolve wraps it in a *NotFoundError when isNotFound says so).
type Getter func(ctx context.Context, name string) (*taskerv1alpha1.TaskTemplate, error)

// NotFoundError is a child workflow's TaskTemplate that does not exist.
type NotFoundError struct {
	// Name of the template, and Path the templates through which it was reached (outermost first).
	Name string
	Path []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("TaskTemplate %q (run as a child workflow%s) not found", e.Name, via(e.Path))
}

// ErrInvalid marks a graph of templates that can never be admitted: a cycle, or nesting deeper than MaxDepth.
var ErrInvalid = errors.New("invalid child workflows")

// Resolve returns, by name, every TaskTemplate that steps run as a child workflow, at any depth. root is the
// template the steps are from ("" for a Task's inline steps): a template that runs itself, directly or through
// others, is refused (ErrInvalid, with the cycle), as is nesting deeper than MaxDepth. isNotFound tells a missing
// template (a *NotFoundError) from other errors of get, which are returned as they are.
func Resolve(ctx context.Context, get Getter, isNotFound func(error) bool, root string,
	steps []taskerv1alpha1.StepSpec) (map[string]*taskerv1alpha1.TaskTemplate, error) {
	found := map[string]*taskerv1alpha1.TaskTemplate{}
	var stack []string
	if root != "" {
		stack = append(stack, root)
	}
	var walk func(steps []taskerv1alpha1.StepSpec, depth int) error
	walk = func(steps []taskerv1alpha1.StepSpec, depth int) error {
		for i := range steps {
			name := steps[i].Template
			if name == "" {
				continue
			}
			for j, on := range stack {
				if on == name {
					return fmt.Errorf("%w: TaskTemplate %s runs itself as a child workflow", ErrInvalid,
						strings.Join(append(append([]string(nil), stack[j:]...), name), " -> "))
				}
			}
			if depth > MaxDepth {
				return fmt.Errorf("%w: child workflows nest at most %d deep (TaskTemplate %q%s)", ErrInvalid, MaxDepth,
					name, via(stack))
			}
			t, ok := found[name]
			if !ok {
				var err error
				if t, err = get(ctx, name); err != nil {
					if isNotFound(err) {
						return &NotFoundError{Name: name, Path: append([]string(nil), stack...)}
					}
					return err
				}
				found[name] = t
			}
			stack = append(stack, name)
			if err := walk(t.Spec.Steps, depth+1); err != nil {
				return err
			}
			stack = stack[:len(stack)-1]
		}
		return nil
	}
	if err := walk(steps, 1); err != nil {
		return nil, err
	}
	return found, nil
}

func via(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return ", via " + strings.Join(path, " -> ")
}
