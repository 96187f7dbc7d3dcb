package webhook

import (
	"context"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/params"
)

// templateReadTimeout bounds the webhook's read of a Task's TaskTemplate (the apiserver waits 10 s for the whole
// review; the read is normally served from the manager's cache).
const templateReadTimeout = 2 * time.Second

// checkArguments checks a Task's arguments (at path, e.g. spec or spec.task, with its templateRef and context)
// against the parameters of the TaskTemplate it references, read with templates: an unknown argument, a required one missing, one of the wrong
// type or outside its enum, and a context that has the "params" key itself are field errors. A template not there
// (yet) or unreadable is a warning: the Task waits for it, and the operator checks the arguments when it admits.
func checkArguments(ctx context.Context, templates client.Reader, namespace string, path *field.Path,
	ref *taskerv1alpha1.TemplateReference, arguments, taskContext *apiextensionsv1.JSON) (field.ErrorList, admission.Warnings) {
	if ref == nil || templates == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, templateReadTimeout)
	defer cancel()
	var tmpl taskerv1alpha1.TaskTemplate
	if err := templates.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &tmpl); err != nil {
		what := "could not be read now"
		if apierrors.IsNotFound(err) {
			what = "does not exist (yet)"
		}
		return nil, admission.Warnings{fmt.Sprintf("TaskTemplate %q %s: the arguments are checked when the operator admits the Task", ref.Name, what)}
	}
	if len(tmpl.Spec.Parameters) == 0 && arguments == nil {
		return nil, nil
	}
	resolved, errs := params.Resolve(path.Child("arguments"), tmpl.Spec.Parameters, arguments)
	if len(errs) > 0 {
		return errs, nil
	}
	var own []byte
	if taskContext != nil {
		own = taskContext.Raw
	}
	if _, err := params.Context(path.Child("context"), own, resolved); err != nil {
		return field.ErrorList{err}, nil
	}
	return nil, nil
}
