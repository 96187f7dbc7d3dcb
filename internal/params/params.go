// Package params checks a TaskTemplate's parameters and resolves a Task's arguments against them: the admission
// webhook uses it to refuse bad arguments with field errors when a Task is applied, and the Task controller to
// build the context the steps see (the resolved parameters under "params").
package params

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// ContextKey is the key of the Task's context under which the steps find the resolved parameters.
const ContextKey = "params"

// CheckTemplate returns an error for each parameter whose default or enum values are not of its type, whose
// default is not in its enum, or that is required and has a default (path is spec.parameters). The CRD schema
// checks names and types; CEL cannot see default and enum (free JSON).
func CheckTemplate(path *field.Path, ps []taskerv1alpha1.TemplateParameter) field.ErrorList {
	var errs field.ErrorList
	for i := range ps {
		p := &ps[i]
		at := path.Index(i)
		for j, e := range p.Enum {
			if msg := typeProblem(p.Type, e.Raw); msg != "" {
				errs = append(errs, field.Invalid(at.Child("enum").Index(j), string(e.Raw), msg))
			}
		}
		if p.Default != nil && p.Required {
			errs = append(errs, field.Forbidden(at.Child("default"), "a required parameter has no default"))
		} else if p.Default != nil {
			if msg := valueProblem(p, p.Default.Raw); msg != "" {
				errs = append(errs, field.Invalid(at.Child("default"), string(p.Default.Raw), msg))
			}
		}
	}
	return errs
}

// Resolve checks arguments (a JSON object, or nil) against the template's parameters and returns every
// parameter's value — the argument, else the default, else null — as a JSON object. Each problem is a field
// error under path (spec.arguments): an argument the template has no parameter for, a required parameter not
// given, a value not of the parameter's type or not in its enum.
func Resolve(path *field.Path, ps []taskerv1alpha1.TemplateParameter, arguments *apiextensionsv1.JSON) (json.RawMessage, field.ErrorList) {
	return ResolveLater(path, nil, ps, arguments, nil)
}

// ResolveLater is Resolve for a step that runs the template as a child workflow: the parameters named in later
// (the keys of its argumentsFrom, at laterPath) get their values when the step becomes ready, so a required one
// among them is not missing; a name in later the template has no parameter for, or given in arguments too, is an
// error. Their values here are their defaults (or null), which the engine replaces.
func ResolveLater(path, laterPath *field.Path, ps []taskerv1alpha1.TemplateParameter, arguments *apiextensionsv1.JSON,
	later []string) (json.RawMessage, field.ErrorList) {
	var args map[string]json.RawMessage
	if arguments != nil && len(arguments.Raw) > 0 && string(arguments.Raw) != "null" {
		if err := json.Unmarshal(arguments.Raw, &args); err != nil || args == nil {
			return nil, field.ErrorList{field.Invalid(path, string(arguments.Raw), "must be a JSON object of parameter name to value")}
		}
	}
	var errs field.ErrorList
	known := make(map[string]bool, len(ps))
	for i := range ps {
		known[ps[i].Name] = true
	}
	names := make([]string, 0, len(args))
	for name := range args {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !known[name] {
			errs = append(errs, field.NotSupported(path.Key(name), name, parameterNames(ps)))
		}
	}
	lateSet := make(map[string]bool, len(later))
	for _, name := range later {
		lateSet[name] = true
		switch {
		case !known[name]:
			errs = append(errs, field.NotSupported(laterPath.Key(name), name, parameterNames(ps)))
		case args[name] != nil:
			errs = append(errs, field.Duplicate(laterPath.Key(name), name))
		}
	}
	out := make(map[string]json.RawMessage, len(ps))
	for i := range ps {
		p := &ps[i]
		v, given := args[p.Name]
		switch {
		case lateSet[p.Name] && !given && p.Default != nil && len(p.Default.Raw) > 0:
			v = p.Default.Raw
		case lateSet[p.Name] && !given:
			v = json.RawMessage("null")
		case given:
			if msg := valueProblem(p, v); msg != "" {
				errs = append(errs, field.Invalid(path.Key(p.Name), string(v), msg))
			}
		case p.Required:
			errs = append(errs, field.Required(path.Key(p.Name), fmt.Sprintf("the template's parameter %s is required", p.Name)))
		case p.Default != nil && len(p.Default.Raw) > 0:
			v = p.Default.Raw
		default:
			v = json.RawMessage("null")
		}
		out[p.Name] = v
	}
	if len(errs) > 0 {
		return nil, errs
	}
	doc, err := json.Marshal(out)
	if err != nil {
		return nil, field.ErrorList{field.InternalError(path, err)}
	}
	return doc, nil
}

// Context lays the resolved parameters into a Task's context under ContextKey. The context must be a JSON object
// (or empty) and must not have that key itself.
func Context(contextPath *field.Path, context, resolved json.RawMessage) (json.RawMessage, *field.Error) {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(context)) > 0 && string(bytes.TrimSpace(context)) != "null" {
		if err := json.Unmarshal(context, &obj); err != nil || obj == nil {
			return nil, field.Invalid(contextPath, "", "must be a JSON object when the template has parameters (they go under \""+ContextKey+"\")")
		}
	}
	if _, ok := obj[ContextKey]; ok {
		return nil, field.Invalid(contextPath.Child(ContextKey), "", "reserved for the template's parameters: give them in spec.arguments")
	}
	obj[ContextKey] = resolved
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, field.InternalError(contextPath, err)
	}
	return out, nil
}

// valueProblem says why v cannot be p's value ("" when it can).
func valueProblem(p *taskerv1alpha1.TemplateParameter, v json.RawMessage) string {
	if msg := typeProblem(p.Type, v); msg != "" {
		return msg
	}
	if len(p.Enum) == 0 {
		return ""
	}
	var allowed []string
	for _, e := range p.Enum {
		if jsonEqual(e.Raw, v) {
			return ""
		}
		allowed = append(allowed, string(e.Raw))
	}
	return "must be one of " + strings.Join(allowed, ", ")
}

// typeProblem says why v is not a JSON value of type t ("" when it is; t empty means string).
func typeProblem(t taskerv1alpha1.ParameterType, v json.RawMessage) string {
	if t == "" {
		t = taskerv1alpha1.ParameterString
	}
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return "not valid JSON"
	}
	ok := false
	switch x := x.(type) {
	case string:
		ok = t == taskerv1alpha1.ParameterString
	case json.Number:
		_, intErr := x.Int64()
		ok = t == taskerv1alpha1.ParameterNumber || (t == taskerv1alpha1.ParameterInteger && intErr == nil)
	case bool:
		ok = t == taskerv1alpha1.ParameterBoolean
	case map[string]any:
		ok = t == taskerv1alpha1.ParameterObject
	case []any:
		ok = t == taskerv1alpha1.ParameterArray
	}
	if ok {
		return ""
	}
	an := "a "
	if t == taskerv1alpha1.ParameterInteger || t == taskerv1alpha1.ParameterObject || t == taskerv1alpha1.ParameterArray {
		an = "an "
	}
	return "must be " + an + string(t)
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func parameterNames(ps []taskerv1alpha1.TemplateParameter) []string {
	out := make([]string, len(ps))
	for i := range ps {
		out[i] = ps[i].Name
	}
	slices.Sort(out)
	return out
}
