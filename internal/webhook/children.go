package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/params"
	"github.com/tasker-operator/tasker-operator/internal/templates"
)

// checkChildren checks the steps (at path, of the template root, "" for a Task's inline steps) that run child
// workflows against the TaskTemplates they name, read with reader: a template that runs itself, directly or
// through others, or nesting deeper than templates.MaxDepth is a field error, and so are a step's arguments and
// argumentsFrom that do not fit its template's parameters (unknown, a required one missing, a value of the wrong
// type). A template not there (yet) or unreadable is a warning: the Task waits for it, and the operator checks
// again when it admits.
func checkChildren(ctx context.Context, reader client.Reader, namespace, root string, path *field.Path,
	steps []taskerv1alpha1.StepSpec) (field.ErrorList, admission.Warnings) {
	if reader == nil || !slices.ContainsFunc(steps, func(s taskerv1alpha1.StepSpec) bool { return s.Template != "" }) {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, templateReadTimeout)
	defer cancel()
	get := func(ctx context.Context, name string) (*taskerv1alpha1.TaskTemplate, error) {
		var t taskerv1alpha1.TaskTemplate
		if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &t); err != nil {
			return nil, err
		}
		return &t, nil
	}
	found, err := templates.Resolve(ctx, get, apierrors.IsNotFound, root, steps)
	var notFound *templates.NotFoundError
	switch {
	case errors.Is(err, templates.ErrInvalid):
		return field.ErrorList{field.Invalid(path, field.OmitValueType{}, err.Error())}, nil
	case errors.As(err, &notFound):
		return nil, admission.Warnings{notFound.Error() + " (yet): the Task waits for it"}
	case err != nil:
		return nil, admission.Warnings{fmt.Sprintf("the TaskTemplates run as child workflows could not be read now (%v): "+
			"the operator checks them when it admits the Task", err)}
	}
	var errs field.ErrorList
	for i := range steps {
		s := &steps[i]
		t := found[s.Template]
		if t == nil {
			continue
		}
		later := make([]string, 0, len(s.ArgumentsFrom))
		for name := range s.ArgumentsFrom {
			later = append(later, name)
		}
		slices.Sort(later)
		at := path.Index(i)
		_, argErrs := params.ResolveLater(at.Child("arguments"), at.Child("argumentsFrom"), t.Spec.Parameters, s.Arguments, later)
		errs = append(errs, argErrs...)
	}
	return errs, nil
}
