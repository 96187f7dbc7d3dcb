package controllers

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/params"
)

// errCRDPredatesDefaults marks a step missing a value the CRD schema defaults: the CRD installed in the cluster is
// older than the operator. The apiserver sets those fields on every create, and on every read of an object stored
// before the defaults existed, so with a current CRD they are always set.
var errCRDPredatesDefaults = errors.New("the CRD installed in the cluster predates this operator's, whose schema defaults it")

// engineTaskSpec turns a Task (and, for spec.templateRef, its TaskTemplate) into what the engine admits. The
// template is read here, once: the engine stores the steps, so later template edits do not reach admitted Tasks.
// With a template that has parameters, the Task's arguments are resolved against them and the steps find the
// values in their context under "params" (internal/params).
//
// The steps' static defaults (timeout, retry policy) come from the CRD schema and are passed through as they are;
// this resolves only the defaults that depend on something else: the queue (the template's, else DefaultQueue)
// and a backoff's max (DefaultBackoffMax, or the base when that is larger). A step without its schema defaults is
// refused (errCRDPredatesDefaults) rather than left to the engine's own defaults, which are for callers without
// the Kubernetes API (an unset timeout there means none at all).
//
// Steps that run a child workflow (template) take it from children (templates.Resolve), recursively: the child's
// steps, context, parameters and outputs are snapshotted into the spec as well.
func engineTaskSpec(task *taskerv1alpha1.Task, tmpl *taskerv1alpha1.TaskTemplate,
	children map[string]*taskerv1alpha1.TaskTemplate) (engine.TaskSpec, error) {
	steps := task.Spec.Steps
	queue := task.Spec.Queue
	var defaultContext *apiextensionsv1.JSON
	concurrency := task.Spec.Concurrency
	outputs := task.Spec.Outputs
	if task.Spec.TemplateRef != nil {
		if tmpl == nil {
			return engine.TaskSpec{}, fmt.Errorf("spec.templateRef: TaskTemplate %q not given", task.Spec.TemplateRef.Name)
		}
		steps = tmpl.Spec.Steps
		if queue == "" {
			queue = tmpl.Spec.Queue
		}
		defaultContext = tmpl.Spec.DefaultContext
		if concurrency == nil {
			concurrency = tmpl.Spec.Concurrency
		}
		if outputs == nil {
			outputs = tmpl.Spec.Outputs
		}
	}
	if queue == "" {
		queue = taskerv1alpha1.DefaultQueue
	}
	taskContext, err := mergeContext(defaultContext, task.Spec.Context)
	if err != nil {
		return engine.TaskSpec{}, err
	}
	if tmpl != nil && (len(tmpl.Spec.Parameters) > 0 || task.Spec.Arguments != nil) {
		// The webhook refuses the same problems when the Task is applied; here they are a Task created while it
		// was off, or a template whose parameters changed since.
		resolved, errs := params.Resolve(field.NewPath("spec", "arguments"), tmpl.Spec.Parameters, task.Spec.Arguments)
		if len(errs) > 0 {
			return engine.TaskSpec{}, fmt.Errorf("%w: TaskTemplate %q: %s", engine.ErrInvalidSpec, tmpl.Name, errs.ToAggregate())
		}
		var ferr *field.Error
		if taskContext, ferr = params.Context(field.NewPath("spec", "context"), taskContext, resolved); ferr != nil {
			return engine.TaskSpec{}, fmt.Errorf("%w: %s", engine.ErrInvalidSpec, ferr)
		}
	}
	spec := engine.TaskSpec{
		ExternalKey:    string(task.UID),
		IdempotencyKey: task.Spec.IdempotencyKey,
		Namespace:      task.Namespace,
		Name:           task.Name,
		Queue:          queue,
		Priority:       int(task.Spec.Priority),
		Context:        taskContext,
		Steps:          make([]engine.StepSpec, len(steps)),
		Outputs:        outputs,
	}
	if concurrency != nil {
		spec.Concurrency = &engine.Concurrency{Group: concurrency.Group, Key: concurrency.Key,
			MaxRunning: int(concurrency.MaxRunning), Strategy: string(concurrency.Strategy)}
	}
	stepsPath := field.NewPath("spec", "steps")
	for i := range steps {
		if spec.Steps[i], err = engineStepSpec(stepsPath.Index(i), &steps[i], children); err != nil {
			if tmpl != nil {
				err = fmt.Errorf("TaskTemplate %q: %w", tmpl.Name, err)
			}
			return engine.TaskSpec{}, err
		}
	}
	return spec, nil
}

func engineStepSpec(path *field.Path, s *taskerv1alpha1.StepSpec, children map[string]*taskerv1alpha1.TaskTemplate) (engine.StepSpec, error) {
	r := s.Retry
	var missing *field.Path
	switch {
	case s.TimeoutSeconds == nil:
		missing = path.Child("timeoutSeconds")
	case r == nil:
		missing = path.Child("retry")
	case r.MaxAttempts == nil:
		missing = path.Child("retry", "maxAttempts")
	case r.Backoff == nil:
		missing = path.Child("retry", "backoff")
	case r.Backoff.Base == nil:
		missing = path.Child("retry", "backoff", "base")
	case r.Backoff.JitterPercent == nil:
		missing = path.Child("retry", "backoff", "jitterPercent")
	}
	if missing != nil {
		return engine.StepSpec{}, fmt.Errorf("%s is not set: %w; upgrade the CRDs", missing, errCRDPredatesDefaults)
	}
	b := r.Backoff
	out := engine.StepSpec{
		Name:      s.Name,
		Handler:   s.Handler,
		Queue:     s.Queue,
		DependsOn: s.DependsOn,
		Timeout:   time.Duration(*s.TimeoutSeconds) * time.Second,
		Retry: engine.RetryPolicy{
			MaxAttempts: int(*r.MaxAttempts),
			BackoffBase: b.Base.Duration,
			BackoffMax:  max(taskerv1alpha1.DefaultBackoffMax, b.Base.Duration),
			Jitter:      float64(*b.JitterPercent) / 100,
		},
	}
	if b.Max != nil {
		out.Retry.BackoffMax = b.Max.Duration
	}
	if out.Retry.Jitter == 0 {
		out.Retry.Jitter = engine.NoJitter // the engine reads 0 as its default
	}
	if s.Inputs != nil {
		out.Inputs = json.RawMessage(s.Inputs.Raw)
	}
	out.When = s.When
	out.ForEach = s.ForEach
	if w := s.Wait; w != nil {
		out.WaitFor = w.Signal
		if w.TimeoutSeconds != nil {
			out.WaitTimeout = time.Duration(*w.TimeoutSeconds) * time.Second
		}
	}
	if s.DelaySeconds != nil {
		out.Delay = time.Duration(*s.DelaySeconds) * time.Second
	}
	if s.NotBefore != nil {
		out.NotBefore = s.NotBefore.Time
	}
	if s.Template != "" {
		child, err := engineChildSpec(path, s, children)
		if err != nil {
			return engine.StepSpec{}, err
		}
		out.Child = child
	}
	return out, nil
}

// engineChildSpec snapshots the TaskTemplate that step s (at path) runs as a child workflow, from children: its
// steps (recursively), default context with the parameters resolved from the step's arguments (those of
// argumentsFrom are the engine's to set when the step becomes ready, checked against their types), queue and
// outputs.
func engineChildSpec(path *field.Path, s *taskerv1alpha1.StepSpec, children map[string]*taskerv1alpha1.TaskTemplate) (*engine.ChildSpec, error) {
	ct := children[s.Template]
	if ct == nil {
		return nil, fmt.Errorf("%s: TaskTemplate %q not given", path.Child("template"), s.Template)
	}
	later := make([]string, 0, len(s.ArgumentsFrom))
	for name := range s.ArgumentsFrom {
		later = append(later, name)
	}
	slices.Sort(later)
	child := &engine.ChildSpec{Template: ct.Name, Queue: ct.Spec.Queue, ArgumentsFrom: s.ArgumentsFrom,
		Outputs: ct.Spec.Outputs}
	ctx, err := mergeContext(ct.Spec.DefaultContext, nil)
	if err != nil {
		return nil, err
	}
	if len(ct.Spec.Parameters) > 0 || s.Arguments != nil || len(later) > 0 {
		resolved, errs := params.ResolveLater(path.Child("arguments"), path.Child("argumentsFrom"), ct.Spec.Parameters,
			s.Arguments, later)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%w: TaskTemplate %q: %s", engine.ErrInvalidSpec, ct.Name, errs.ToAggregate())
		}
		var ferr *field.Error
		if ctx, ferr = params.Context(field.NewPath("defaultContext"), ctx, resolved); ferr != nil {
			return nil, fmt.Errorf("%w: TaskTemplate %q: %s", engine.ErrInvalidSpec, ct.Name, ferr)
		}
		child.Parameters = make(map[string]engine.ChildParameter, len(ct.Spec.Parameters))
		for _, p := range ct.Spec.Parameters {
			cp := engine.ChildParameter{Type: string(p.Type)}
			for _, e := range p.Enum {
				cp.Enum = append(cp.Enum, json.RawMessage(e.Raw))
			}
			child.Parameters[p.Name] = cp
		}
	}
	child.Context = ctx
	child.Steps = make([]engine.StepSpec, len(ct.Spec.Steps))
	stepsPath := path.Child("template:" + ct.Name).Child("steps")
	for i := range ct.Spec.Steps {
		if child.Steps[i], err = engineStepSpec(stepsPath.Index(i), &ct.Spec.Steps[i], children); err != nil {
			return nil, err
		}
	}
	return child, nil
}

// mergeContext lays the Task's context over the template's default context: a shallow merge of two JSON objects,
// the Task's keys winning. When either is not an object, the Task's context (if any) wins whole.
func mergeContext(defaults, own *apiextensionsv1.JSON) (json.RawMessage, error) {
	if defaults == nil || len(defaults.Raw) == 0 {
		if own == nil {
			return nil, nil
		}
		return json.RawMessage(own.Raw), nil
	}
	if own == nil || len(own.Raw) == 0 {
		return json.RawMessage(defaults.Raw), nil
	}
	var base, over map[string]json.RawMessage
	if json.Unmarshal(defaults.Raw, &base) != nil || json.Unmarshal(own.Raw, &over) != nil || base == nil || over == nil {
		return json.RawMessage(own.Raw), nil
	}
	for k, v := range over {
		base[k] = v
	}
	merged, err := json.Marshal(base)
	if err != nil {
		return nil, fmt.Errorf("spec.context: %w", err)
	}
	return merged, nil
}
