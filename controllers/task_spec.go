package controllers

import (
	"encoding/json"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// defaultStepTimeout applies to steps without timeoutSeconds (the API documents 3600).
const defaultStepTimeout = time.Hour

// engineTaskSpec turns a Task (and, for spec.templateRef, its TaskTemplate) into what the engine admits. The
// template is read here, once: the engine stores the steps, so later template edits do not reach admitted Tasks.
func engineTaskSpec(task *taskerv1alpha1.Task, tmpl *taskerv1alpha1.TaskTemplate) (engine.TaskSpec, error) {
	steps := task.Spec.Steps
	queue := task.Spec.Queue
	var defaultContext *apiextensionsv1.JSON
	if task.Spec.TemplateRef != nil {
		if tmpl == nil {
			return engine.TaskSpec{}, fmt.Errorf("spec.templateRef: TaskTemplate %q not given", task.Spec.TemplateRef.Name)
		}
		steps = tmpl.Spec.Steps
		if queue == "" {
			queue = tmpl.Spec.Queue
		}
		defaultContext = tmpl.Spec.DefaultContext
	}
	if queue == "" {
		queue = taskerv1alpha1.DefaultQueue
	}
	taskContext, err := mergeContext(defaultContext, task.Spec.Context)
	if err != nil {
		return engine.TaskSpec{}, err
	}
	spec := engine.TaskSpec{
		ExternalKey: string(task.UID),
		Namespace:   task.Namespace,
		Name:        task.Name,
		Queue:       queue,
		Priority:    int(task.Spec.Priority),
		Context:     taskContext,
		Steps:       make([]engine.StepSpec, len(steps)),
	}
	for i := range steps {
		spec.Steps[i] = engineStepSpec(&steps[i])
	}
	return spec, nil
}

func engineStepSpec(s *taskerv1alpha1.StepSpec) engine.StepSpec {
	out := engine.StepSpec{
		Name:      s.Name,
		Handler:   s.Handler,
		Queue:     s.Queue,
		DependsOn: s.DependsOn,
		Timeout:   defaultStepTimeout,
	}
	if s.Inputs != nil {
		out.Inputs = json.RawMessage(s.Inputs.Raw)
	}
	if s.TimeoutSeconds != nil {
		out.Timeout = time.Duration(*s.TimeoutSeconds) * time.Second
	}
	if r := s.Retry; r != nil {
		if r.MaxAttempts != nil {
			out.Retry.MaxAttempts = int(*r.MaxAttempts)
		}
		if b := r.Backoff; b != nil {
			if b.Base != nil {
				out.Retry.BackoffBase = b.Base.Duration
			}
			if b.Max != nil {
				out.Retry.BackoffMax = b.Max.Duration
			}
			if b.JitterPercent != nil {
				if *b.JitterPercent == 0 {
					out.Retry.Jitter = engine.NoJitter
				} else {
					out.Retry.Jitter = float64(*b.JitterPercent) / 100
				}
			}
		}
	}
	return out
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
