// Package webhook serves the admission checks that the CRD schema cannot express: the step graph (every
// dependsOn names a step, no cycles) and the size of free-JSON fields.
//
// The CRD's OpenAPI and CEL rules catch everything else (names, ranges, uniqueness, immutability). dependsOn
// resolution is here and not in CEL because, with up to 1,000 steps, the rule's estimated cost exceeds what the
// apiserver allows for a CRD.
package webhook

import (
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"k8s.io/apimachinery/pkg/util/validation/field"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cronschedule"
	"github.com/tasker-operator/tasker-operator/internal/dag"
	"github.com/tasker-operator/tasker-operator/internal/params"
)

// ValidateSteps checks a step graph and returns errors with paths under stepsPath (e.g. spec.steps).
func ValidateSteps(stepsPath *field.Path, steps []taskerv1alpha1.StepSpec) field.ErrorList {
	var errs field.ErrorList
	if len(steps) > taskerv1alpha1.MaxSteps {
		return append(errs, field.TooMany(stepsPath, len(steps), taskerv1alpha1.MaxSteps))
	}
	nodes := make([]dag.Node, len(steps))
	for i := range steps {
		nodes[i] = dag.Node{Name: steps[i].Name, DependsOn: steps[i].DependsOn}
		if steps[i].Inputs != nil && len(steps[i].Inputs.Raw) > taskerv1alpha1.MaxContextBytes {
			errs = append(errs, field.TooLong(stepsPath.Index(i).Child("inputs"), "", taskerv1alpha1.MaxContextBytes))
		}
		// Not CEL: arguments are free JSON (schemaless), which CEL rules cannot refer to.
		if a := steps[i].Arguments; a != nil {
			if steps[i].Template == "" {
				errs = append(errs, field.Forbidden(stepsPath.Index(i).Child("arguments"),
					"arguments give a child workflow's parameters: they need template"))
			}
			if len(a.Raw) > taskerv1alpha1.MaxContextBytes {
				errs = append(errs, field.TooLong(stepsPath.Index(i).Child("arguments"), "", taskerv1alpha1.MaxContextBytes))
			}
		}
	}
	for _, e := range dag.Validate(nodes) {
		if e.Field == "" {
			errs = append(errs, field.Invalid(stepsPath, field.OmitValueType{}, e.Message))
			continue
		}
		// dag paths look like "[3].dependsOn[1]": a child of the steps list.
		errs = append(errs, field.Invalid(field.NewPath(stepsPath.String()+e.Field), field.OmitValueType{}, e.Message))
	}
	return errs
}

// ValidateTask checks what the CRD schema leaves to the webhook.
func ValidateTask(task *taskerv1alpha1.Task) field.ErrorList {
	spec := field.NewPath("spec")
	errs := ValidateSteps(spec.Child("steps"), task.Spec.Steps)
	if task.Spec.Context != nil && len(task.Spec.Context.Raw) > taskerv1alpha1.MaxContextBytes {
		errs = append(errs, field.TooLong(spec.Child("context"), "", taskerv1alpha1.MaxContextBytes))
	}
	errs = append(errs, argumentsProblems(spec, task.Spec.Arguments, task.Spec.TemplateRef)...)
	for i, a := range task.Spec.Actions {
		if a.Result != nil && len(a.Result.Raw) > taskerv1alpha1.MaxContextBytes {
			errs = append(errs, field.TooLong(spec.Child("actions").Index(i).Child("result"), "", taskerv1alpha1.MaxContextBytes))
		}
		// Not CEL: result and inputs are free JSON (schemaless), which CEL rules cannot refer to ("undefined field").
		if a.Result != nil && a.Type != taskerv1alpha1.ActionComplete && a.Type != taskerv1alpha1.ActionSignal {
			errs = append(errs, field.Forbidden(spec.Child("actions").Index(i).Child("result"),
				"result is only allowed with type Complete (the step's result) or Signal (the signal's payload)"))
		}
		if a.Inputs != nil && a.Type != taskerv1alpha1.ActionRetry {
			errs = append(errs, field.Forbidden(spec.Child("actions").Index(i).Child("inputs"), "inputs are only allowed with type Retry"))
		}
		if a.Inputs != nil && len(a.Inputs.Raw) > taskerv1alpha1.MaxContextBytes {
			errs = append(errs, field.TooLong(spec.Child("actions").Index(i).Child("inputs"), "", taskerv1alpha1.MaxContextBytes))
		}
		if a.Step != "" && len(task.Spec.Steps) > 0 && !hasStep(task.Spec.Steps, a.Step) {
			errs = append(errs, field.NotFound(spec.Child("actions").Index(i).Child("step"), a.Step))
		}
	}
	return errs
}

// ValidateTaskTemplate checks what the CRD schema leaves to the webhook.
func ValidateTaskTemplate(tmpl *taskerv1alpha1.TaskTemplate) field.ErrorList {
	spec := field.NewPath("spec")
	errs := ValidateSteps(spec.Child("steps"), tmpl.Spec.Steps)
	if tmpl.Spec.DefaultContext != nil && len(tmpl.Spec.DefaultContext.Raw) > taskerv1alpha1.MaxContextBytes {
		errs = append(errs, field.TooLong(spec.Child("defaultContext"), "", taskerv1alpha1.MaxContextBytes))
	}
	return append(errs, params.CheckTemplate(spec.Child("parameters"), tmpl.Spec.Parameters)...)
}

// argumentsProblems: arguments need a template (not CEL: arguments are free JSON, which CEL rules cannot refer
// to), and are bounded like a context.
func argumentsProblems(spec *field.Path, args *apiextensionsv1.JSON, ref *taskerv1alpha1.TemplateReference) field.ErrorList {
	if args == nil {
		return nil
	}
	var errs field.ErrorList
	if ref == nil {
		errs = append(errs, field.Forbidden(spec.Child("arguments"), "arguments are the parameters of a template: they need templateRef"))
	}
	if len(args.Raw) > taskerv1alpha1.MaxContextBytes {
		errs = append(errs, field.TooLong(spec.Child("arguments"), "", taskerv1alpha1.MaxContextBytes))
	}
	return errs
}

// ValidateCronTask checks what the CRD schema leaves to the webhook: the schedule and time zone parse, and the
// inline Task's steps and context follow a Task's rules (paths under spec.task).
func ValidateCronTask(ct *taskerv1alpha1.CronTask) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if _, err := cronschedule.Parse(ct.Spec.Schedule, nil); err != nil {
		errs = append(errs, field.Invalid(spec.Child("schedule"), ct.Spec.Schedule, err.Error()))
	}
	if tz := ct.Spec.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil {
			errs = append(errs, field.Invalid(spec.Child("timeZone"), *tz, "not a known IANA time zone"))
		}
	}
	task := spec.Child("task")
	errs = append(errs, ValidateSteps(task.Child("steps"), ct.Spec.Task.Steps)...)
	if ct.Spec.Task.Context != nil && len(ct.Spec.Task.Context.Raw) > taskerv1alpha1.MaxContextBytes {
		errs = append(errs, field.TooLong(task.Child("context"), "", taskerv1alpha1.MaxContextBytes))
	}
	errs = append(errs, argumentsProblems(task, ct.Spec.Task.Arguments, ct.Spec.Task.TemplateRef)...)
	return errs
}

// hasStep reports whether name is a step of steps, or may be one made of them when the Task runs: an instance of a
// map step ("<step>[<i>]"), or a step of a child workflow ("<step>/<child step>", checked by the engine).
func hasStep(steps []taskerv1alpha1.StepSpec, name string) bool {
	first, rest, _ := strings.Cut(name, "/")
	own, _, instance := strings.Cut(first, "[")
	for i := range steps {
		s := &steps[i]
		if s.Name == own && (rest == "" || s.Template != "") && (!instance || s.ForEach != "") {
			return true
		}
	}
	return false
}
