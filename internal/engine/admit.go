package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"

	"github.com/tasker-operator/tasker-operator/internal/dag"
	"github.com/tasker-operator/tasker-operator/internal/pgmq"
)

// Limits checked by TaskSpec validation.
const (
	// MaxSteps is the largest number of steps in a task.
	MaxSteps = dag.MaxSteps
	// MaxJSONSize bounds TaskSpec.Context and each StepSpec.Inputs (bytes of JSON).
	MaxJSONSize = 1 << 20
	// MaxAttempts bounds RetryPolicy.MaxAttempts.
	MaxAttempts = 1000
	// MaxBackoff bounds RetryPolicy.BackoffBase and BackoffMax.
	MaxBackoff = 24 * time.Hour
	// MaxTimeout bounds StepSpec.Timeout.
	MaxTimeout = 30 * 24 * time.Hour
	// MaxRetention bounds TaskSpec.Retention.
	MaxRetention = 10 * 365 * 24 * time.Hour
	maxKeyLength = 255
	maxNameLen   = 253
)

// Defaults of RetryPolicy, for the engine's direct Go callers (tools and tests without the Kubernetes API; SQL
// callers of tasker.admit get that function's own, docs/worker-protocol.md). The operator does not rely on them:
// it admits Tasks with every value set, from their CRD schema's defaults (docs/tasks.md#defaults).
const (
	DefaultMaxAttempts = 3
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 5 * time.Minute
	DefaultJitter      = 0.2
	// NoJitter as RetryPolicy.Jitter disables jitter (zero means DefaultJitter).
	NoJitter = -1.0
)

// TaskSpec describes a task to admit.
type TaskSpec struct {
	// ExternalKey makes admission idempotent (the Task CR's UID). Required, at most 255 characters.
	ExternalKey string
	// IdempotencyKey, when set, makes admission idempotent across external keys too: a spec with the Namespace
	// and IdempotencyKey of a task still in the database (retention) is that task (Admission.Created false), as
	// for a known ExternalKey. At most 253 characters.
	IdempotencyKey string
	// Namespace and Name identify the task for people (the CR's namespace and name). Optional.
	Namespace, Name string
	// Queue is the default queue of the steps (^[a-z0-9_]{1,40}$). Required unless every step names one.
	Queue string
	// Priority orders the task's steps among the visible steps of their queue: higher is claimed first, FIFO
	// within a priority. Default 0. A queue's first task with a priority other than 0 makes it prioritized (an
	// index and a priority-ordered read from then on); queues whose tasks all use 0 keep pgmq's plain FIFO read.
	Priority int
	// Context is free JSON given to every step's handler (at most MaxJSONSize bytes; empty means null).
	Context json.RawMessage
	// Steps is the graph: 1 to MaxSteps steps, names unique, dependencies acyclic.
	Steps []StepSpec
	// Retention is how long the task and its history are kept after it finishes. Zero means the engine's
	// Options.DefaultRetention.
	Retention time.Duration
	// Concurrency, if set, puts the task in a concurrency group (flowcontrol.go).
	Concurrency *Concurrency
	// TraceContext is the W3C trace context of the task's trace, as text propagation fields ("traceparent",
	// optionally "tracestate"; docs/tracing.md): stored with the task and handed to workers with every claim of
	// its steps. At most MaxTraceContextSize bytes of JSON. Empty: none.
	TraceContext map[string]string
	// Outputs declares the task's outputs: name (letters, digits, '_' and '-', at most 63) to a SQL/JSON path over
	// {"steps": {<step>: <its result>}, "context": <the context>}, evaluated once the task has succeeded
	// (TaskState.Outputs); a path that finds nothing gives null. At most 64. Empty: none.
	Outputs map[string]string
}

// MaxTraceContextSize bounds TaskSpec.TraceContext (bytes of JSON): W3C allows a tracestate of 512 characters.
const MaxTraceContextSize = 2048

// StepSpec is one step of a TaskSpec.
type StepSpec struct {
	// Name is unique in the task, an RFC 1123 label (lower-case letters, digits and '-', at most 63).
	Name string
	// Handler names the code a worker runs for the step. Required, at most 253 characters.
	Handler string
	// Queue overrides the task's queue for this step.
	Queue string
	// DependsOn names the steps that must succeed (or be resolved) before this one runs.
	DependsOn []string
	// Inputs is free JSON given to the handler (at most MaxJSONSize bytes; empty means null).
	Inputs json.RawMessage
	// Retry is the step's retry policy.
	Retry RetryPolicy
	// Timeout bounds each attempt (rounded up to whole seconds; upkeep fails attempts that run longer). Zero
	// means no limit.
	Timeout time.Duration
	// Delay is how long the step waits, each time it becomes ready (admitted without dependencies, its
	// dependencies finished, its task resumed, or retried by an operator), before its first attempt becomes
	// claimable: its message is sent with that visibility, so no worker waits. Millisecond precision, at most
	// MaxDelay. Zero: none.
	Delay time.Duration
	// NotBefore, when set, is the earliest time an attempt of the step becomes claimable (with Delay, the later
	// of the two).
	NotBefore time.Time
	// When, if set, is a condition: a SQL/JSON path predicate over {"context": <the task's context>, "deps":
	// {<dependency>: <its result>}}, e.g. `$.deps.review.approved == true`, evaluated by PostgreSQL as the step
	// becomes ready. False or unknown: the step is omitted (StepOmitted): it finishes without running, and its
	// children see a null result. Checked at admission (at most 1024 characters, a predicate).
	When string
	// WaitFor makes the step wait for the signal of that name (Engine.Signal, SQL tasker.signal) instead of
	// running a handler (Handler must then be empty): when it becomes ready it is StepWaiting, with no message,
	// until the signal completes it with its payload as the result. A signal sent earlier completes it at once. A
	// lower-case name of letters, digits, '-', '_' and '.', at most 63 characters.
	WaitFor string
	// WaitTimeout, with WaitFor, bounds each wait (whole seconds): past it the attempt fails and the retry policy
	// applies (a retry waits again). Zero: no limit.
	WaitTimeout time.Duration
	// ForEach, if set, makes the step a map: a SQL/JSON path over {"context": ..., "deps": ...} (as When's
	// document), e.g. `$.deps.list.files`, that must give an array of at most MaxMapItems elements when the step
	// becomes ready. The step then runs once per element — instances named "<name>[<index>]", each with its
	// element (ClaimedStep.Item) and index, the step's handler, inputs, retry policy and dependencies' results —
	// and succeeds, once every instance has, with their results as one array in index order (StepMapping
	// meanwhile). An empty array succeeds at once with []; no array, or a longer one, fails the step. Not with
	// WaitFor. At most 1024 characters.
	ForEach string
	// Child, if set, makes the step run a child workflow instead of a handler (Handler and WaitFor empty): when
	// the step becomes ready, the child's steps join the task, named "<name>/<child step>", with the child's
	// context; the step is StepMapping until they have finished, then succeeds with the child's outputs. With
	// ForEach, each instance runs the child. See ChildSpec.
	Child *ChildSpec
}

// ChildSpec is a child workflow: the steps of a TaskTemplate, resolved when the parent is admitted (later edits of
// the template do not reach it).
//
// When its step becomes ready, ArgumentsFrom is evaluated over the step's document ({"context", "deps", and
// "item" for a map instance}, as When's), each value checked against Parameters, and set under "params" in
// Context, which the child's steps get as their context (dependency results within the child are by their names
// there). A child step that fails for good fails the child: the step runs it again (afresh, every child step
// anew, after the step's backoff) while the step's retry policy allows, else the step fails. Its result is Outputs evaluated over {"steps":
// {<child step>: <result>}, "context": <the child's context>}, or, with none declared, an object of the results of
// the child's last steps (those no other child step depends on) by name.
type ChildSpec struct {
	// Template names the TaskTemplate (for people: status, history). Required, at most 253 characters.
	Template string
	// Context is the child's context, with the parameters resolved at admission under "params" (an object when
	// ArgumentsFrom is set).
	Context json.RawMessage
	// ArgumentsFrom gives parameters their values when the step becomes ready: parameter name to SQL/JSON path.
	// A path that finds nothing fails the step.
	ArgumentsFrom map[string]string
	// Parameters are the types (string, number, integer, boolean, object, array; empty: any) and enums the values of
	// ArgumentsFrom are checked against.
	Parameters map[string]ChildParameter
	// Queue is the queue of the child's steps that name none. Empty: the step's queue.
	Queue string
	// Steps is the child's graph, checked as a task's.
	Steps []StepSpec
	// Outputs declares the child's outputs, as TaskSpec.Outputs.
	Outputs map[string]string
}

// ChildParameter is what a value given by ChildSpec.ArgumentsFrom must be.
type ChildParameter struct {
	Type string
	Enum []json.RawMessage
}

// MaxChildDepth bounds how deep child workflows nest, as the database's tasker.max_child_depth().
const MaxChildDepth = 5

// MaxMapItems bounds the array a map step (StepSpec.ForEach) runs over, as the database's tasker.max_map_items().
const MaxMapItems = 10000

// MaxDelay bounds StepSpec.Delay: ten years, as the SQL document's delay_seconds.
const MaxDelay = 10 * 365 * 24 * time.Hour

// RetryPolicy says how a failing step is retried: attempt n (n >= 1) that fails with a retryable error is
// retried after min(BackoffMax, BackoffBase * 2^(n-1)), spread by +/- Jitter (a fraction), unless the worker
// gives a retry-after.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts, the first included. Zero means DefaultMaxAttempts (3).
	MaxAttempts int
	// BackoffBase is the delay after the first failed attempt. Zero means DefaultBackoffBase (1 s). Millisecond
	// precision.
	BackoffBase time.Duration
	// BackoffMax caps the delay. Zero means DefaultBackoffMax (5 min), or BackoffBase if that is larger.
	BackoffMax time.Duration
	// Jitter in (0, 1] spreads each delay by up to that fraction either way. Zero means DefaultJitter (0.2);
	// NoJitter (any negative value) means none.
	Jitter float64
}

// Admission is the result of Admit.
type Admission struct {
	TaskID int64
	// Created is false when a task with the same ExternalKey existed already (nothing was changed).
	Created bool
}

// Admit validates spec and admits it in one transaction: the task, its steps and dependency edges, the queues
// it needs (created in pgmq when missing), and a message for every step without dependencies. Admission is
// idempotent on spec.ExternalKey: when the key is known, Admit returns that task with Created false and changes
// nothing (even if the spec differs: steps are immutable once admitted).
//
// A spec that fails validation gives a *SpecError (ErrInvalidSpec) naming every bad field, before any SQL runs.
func (e *Engine) Admit(ctx context.Context, spec TaskSpec) (_ Admission, err error) {
	ctx, span := startSpan(ctx, "tasker.admit", attribute.Int("tasker.task.steps", len(spec.Steps)))
	defer func() { endSpan(span, err) }()
	doc, err := e.admissionDocument(spec)
	if err != nil {
		return Admission{}, err
	}
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var a Admission
	if err := e.pool.QueryRow(cctx, sqlAdmit, doc).Scan(&a.TaskID, &a.Created); err != nil {
		return Admission{}, dbError(ctx, "admit task", err)
	}
	span.SetAttributes(attrTask.Int64(a.TaskID), attribute.Bool("tasker.task.created", a.Created))
	return a, nil
}

// The JSON document tasker.admit takes (docs/worker-protocol.md).
type admitDoc struct {
	ExternalKey      string            `json:"external_key"`
	IdempotencyKey   string            `json:"idempotency_key,omitempty"`
	Namespace        string            `json:"namespace"`
	Name             string            `json:"name"`
	Queue            string            `json:"queue"`
	Priority         int               `json:"priority"`
	Context          json.RawMessage   `json:"context"`
	RetentionSeconds float64           `json:"retention_seconds"`
	Steps            []admitStep       `json:"steps"`
	Concurrency      *admitConcurrency `json:"concurrency,omitempty"`
	TraceContext     map[string]string `json:"trace_context,omitempty"`
	Outputs          map[string]string `json:"outputs,omitempty"`
}

type admitStep struct {
	Name           string          `json:"name"`
	Handler        string          `json:"handler"`
	Queue          string          `json:"queue,omitempty"`
	DependsOn      []string        `json:"depends_on"`
	Inputs         json.RawMessage `json:"inputs"`
	MaxAttempts    int             `json:"max_attempts"`
	BackoffBaseMs  int64           `json:"backoff_base_ms"`
	BackoffMaxMs   int64           `json:"backoff_max_ms"`
	BackoffJitter  float64         `json:"backoff_jitter"`
	TimeoutSeconds int64           `json:"timeout_seconds"`
	DelaySeconds   float64         `json:"delay_seconds,omitempty"`
	NotBefore      *time.Time      `json:"not_before,omitempty"`
	When           string          `json:"when,omitempty"`
	WaitFor        string          `json:"wait_for,omitempty"`
	WaitTimeout    int64           `json:"wait_timeout_seconds,omitempty"`
	ForEach        string          `json:"for_each,omitempty"`
	Child          *admitChild     `json:"child,omitempty"`
}

// admitChild is a step's child workflow in tasker.admit's document (children.sql).
type admitChild struct {
	Template      string                    `json:"template"`
	Context       json.RawMessage           `json:"context"`
	ArgumentsFrom map[string]string         `json:"arguments_from,omitempty"`
	Parameters    map[string]admitParameter `json:"parameters,omitempty"`
	Queue         string                    `json:"queue,omitempty"`
	Steps         []admitStep               `json:"steps"`
	Outputs       map[string]string         `json:"outputs,omitempty"`
}

type admitParameter struct {
	Type string            `json:"type,omitempty"`
	Enum []json.RawMessage `json:"enum,omitempty"`
}

// ForEachProblems says, for each forEach path (StepSpec.ForEach), why it cannot be one ("" when it can), as
// admission will: PostgreSQL parses it, and it must not be a predicate. The admission webhook calls it.
func (e *Engine) ForEachProblems(ctx context.Context, paths []string) ([]string, error) {
	return e.expressionProblems(ctx, sqlForEachProblems, "check forEach paths", paths)
}

// ConditionProblems says, for each condition (StepSpec.When), why it cannot be one ("" when it can), as admission
// will: PostgreSQL parses it, and it must be a predicate. The admission webhook calls it, so that a bad condition
// is refused when the Task is applied.
func (e *Engine) ConditionProblems(ctx context.Context, conditions []string) ([]string, error) {
	return e.expressionProblems(ctx, sqlConditions, "check conditions", conditions)
}

func (e *Engine) expressionProblems(ctx context.Context, query, what string, exprs []string) ([]string, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	rows, err := e.pool.Query(cctx, query, exprs)
	if err != nil {
		return nil, dbError(ctx, what, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, dbError(ctx, what, err)
	}
	return out, nil
}

// Validate checks spec without admitting it and returns a *SpecError listing every problem, or nil.
func (e *Engine) Validate(spec TaskSpec) error {
	_, err := e.admissionDocument(spec)
	return err
}

func (e *Engine) admissionDocument(spec TaskSpec) ([]byte, error) {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}

	switch {
	case spec.ExternalKey == "":
		add("externalKey", "required")
	case len(spec.ExternalKey) > maxKeyLength:
		add("externalKey", "must be at most %d characters", maxKeyLength)
	}
	if len(spec.IdempotencyKey) > maxNameLen {
		add("idempotencyKey", "must be at most %d characters", maxNameLen)
	}
	if len(spec.Namespace) > maxNameLen {
		add("namespace", "must be at most %d characters", maxNameLen)
	}
	if len(spec.Name) > maxNameLen {
		add("name", "must be at most %d characters", maxNameLen)
	}
	if spec.Queue != "" {
		if err := pgmq.ValidateQueueName(spec.Queue); err != nil {
			add("queue", "%q is not a valid queue name: must match ^[a-z0-9_]{1,40}$", spec.Queue)
		}
	}
	if spec.Priority < math.MinInt32 || spec.Priority > math.MaxInt32 {
		add("priority", "out of range")
	}
	context, ok := jsonValue(spec.Context)
	if !ok {
		add("context", "must be valid JSON")
	} else if len(context) > MaxJSONSize {
		add("context", "must be at most %d bytes of JSON", MaxJSONSize)
	}
	if n := len(spec.TraceContext); n > 0 {
		size := 2
		for k, v := range spec.TraceContext {
			size += len(k) + len(v) + 6
			if k == "" {
				add("traceContext", "field names must not be empty")
			}
		}
		if size > MaxTraceContextSize {
			add("traceContext", "must be at most %d bytes of JSON", MaxTraceContextSize)
		}
	}
	retention := spec.Retention
	switch {
	case retention < 0:
		add("retention", "must not be negative")
	case retention == 0:
		retention = e.opts.DefaultRetention
	case retention > MaxRetention:
		add("retention", "must be at most %s", MaxRetention)
	}

	concurrency := concurrencyDocument(spec.Concurrency, add)

	if len(spec.Steps) == 0 {
		add("steps", "at least one step is required")
	} else if len(spec.Steps) > MaxSteps {
		add("steps", "at most %d steps are allowed, got %d", MaxSteps, len(spec.Steps))
		return nil, &SpecError{Errors: errs} // do not walk a hostile number of steps
	}

	steps := stepsDocument(spec.Steps, spec.Queue, "steps", 1, add)
	for name, path := range spec.Outputs {
		checkOutput("outputs", name, path, add)
	}
	if len(errs) > 0 {
		return nil, &SpecError{Errors: errs}
	}
	doc, err := json.Marshal(admitDoc{
		ExternalKey:      spec.ExternalKey,
		IdempotencyKey:   spec.IdempotencyKey,
		Namespace:        spec.Namespace,
		Name:             spec.Name,
		Queue:            spec.Queue,
		Priority:         spec.Priority,
		Context:          context,
		RetentionSeconds: retention.Seconds(),
		Steps:            steps,
		Concurrency:      concurrency,
		TraceContext:     spec.TraceContext,
		Outputs:          spec.Outputs,
	})
	if err != nil {
		return nil, &SpecError{Errors: []FieldError{{Message: "cannot encode the spec: " + err.Error()}}}
	}
	return doc, nil
}

// stepsDocument checks specs (at path, e.g. "steps", nested depth deep in child workflows) and returns them as
// tasker.admit's step objects, defaultQueue the queue of steps that name none. Problems go to add.
func stepsDocument(specs []StepSpec, defaultQueue, path string, depth int, add func(field, format string, args ...any)) []admitStep {
	nodes := make([]dag.Node, len(specs))
	for i, s := range specs {
		nodes[i] = dag.Node{Name: s.Name, DependsOn: s.DependsOn}
	}
	for _, de := range dag.Validate(nodes) {
		add(path+de.Field, "%s", de.Message)
	}

	steps := make([]admitStep, len(specs))
	for i, s := range specs {
		f := func(name string) string { return path + "[" + strconv.Itoa(i) + "]." + name }
		switch {
		case s.Child != nil && (s.Handler != "" || s.WaitFor != ""):
			add(f("child"), "a step runs a child workflow, runs a handler or waits for a signal: one of the three")
		case s.Handler == "" && s.WaitFor == "" && s.Child == nil:
			add(f("handler"), "required (or waitFor, for a step that waits for a signal, or child, for a step that runs a child workflow)")
		case s.Handler != "" && s.WaitFor != "":
			add(f("waitFor"), "a step waits for a signal or runs a handler, not both")
		case len(s.Handler) > maxNameLen:
			add(f("handler"), "must be at most %d characters", maxNameLen)
		}
		if s.ForEach != "" && s.WaitFor != "" {
			add(f("forEach"), "a step that waits for a signal (waitFor) cannot map")
		}
		queue := s.Queue
		if queue == "" {
			queue = defaultQueue
		}
		if s.Queue != "" {
			if err := pgmq.ValidateQueueName(s.Queue); err != nil {
				add(f("queue"), "%q is not a valid queue name: must match ^[a-z0-9_]{1,40}$", s.Queue)
			}
		} else if defaultQueue == "" {
			add(f("queue"), "required when the task has no queue")
		}
		inputs, ok := jsonValue(s.Inputs)
		if !ok {
			add(f("inputs"), "must be valid JSON")
		} else if len(inputs) > MaxJSONSize {
			add(f("inputs"), "must be at most %d bytes of JSON", MaxJSONSize)
		}

		r := s.Retry
		attempts := r.MaxAttempts
		switch {
		case attempts == 0:
			attempts = DefaultMaxAttempts
		case attempts < 0 || attempts > MaxAttempts:
			add(f("retry.maxAttempts"), "must be between 1 and %d", MaxAttempts)
		}
		base := r.BackoffBase
		switch {
		case base == 0:
			base = DefaultBackoffBase
		case base < 0 || base > MaxBackoff:
			add(f("retry.backoff.base"), "must be between 0 and %s", MaxBackoff)
		}
		maxDelay := r.BackoffMax
		switch {
		case maxDelay == 0:
			maxDelay = max(DefaultBackoffMax, base)
		case maxDelay < 0 || maxDelay > MaxBackoff:
			add(f("retry.backoff.max"), "must be between 0 and %s", MaxBackoff)
		case maxDelay < base:
			add(f("retry.backoff.max"), "must not be less than the base (%s)", base)
		}
		jitter := r.Jitter
		switch {
		case jitter == 0:
			jitter = DefaultJitter
		case jitter < 0:
			jitter = 0
		case jitter > 1 || math.IsNaN(jitter):
			add(f("retry.backoff.jitter"), "must be between 0 and 1")
		}
		if s.Timeout < 0 || s.Timeout > MaxTimeout {
			add(f("timeoutSeconds"), "must be between 0 and %s", MaxTimeout)
		}
		if s.Delay < 0 || s.Delay > MaxDelay {
			add(f("delaySeconds"), "must be between 0 and %s", MaxDelay)
		}
		var notBefore *time.Time
		if !s.NotBefore.IsZero() {
			notBefore = &s.NotBefore
		}
		deps := s.DependsOn
		if deps == nil {
			deps = []string{}
		}
		steps[i] = admitStep{
			Name:           s.Name,
			Handler:        s.Handler,
			Queue:          queue,
			DependsOn:      deps,
			Inputs:         inputs,
			MaxAttempts:    attempts,
			BackoffBaseMs:  base.Milliseconds(),
			BackoffMaxMs:   maxDelay.Milliseconds(),
			BackoffJitter:  jitter,
			TimeoutSeconds: int64(math.Ceil(s.Timeout.Seconds())),
			DelaySeconds:   float64(s.Delay.Milliseconds()) / 1000,
			NotBefore:      notBefore,
			When:           s.When,
			WaitFor:        s.WaitFor,
			WaitTimeout:    int64(math.Ceil(s.WaitTimeout.Seconds())),
			ForEach:        s.ForEach,
		}
		if s.Child != nil {
			steps[i].Child = childDocument(s.Child, queue, f("child"), depth, add)
		}
	}
	return steps
}

// childDocument checks a child workflow (at path, depth deep) and returns it as tasker.admit's child document,
// queue being the queue of its step.
func childDocument(c *ChildSpec, queue, path string, depth int, add func(field, format string, args ...any)) *admitChild {
	if depth > MaxChildDepth {
		add(path, "child workflows nest at most %d deep", MaxChildDepth)
		return nil
	}
	switch {
	case c.Template == "":
		add(path+".template", "required")
	case len(c.Template) > maxNameLen:
		add(path+".template", "must be at most %d characters", maxNameLen)
	}
	if c.Queue != "" {
		if err := pgmq.ValidateQueueName(c.Queue); err != nil {
			add(path+".queue", "%q is not a valid queue name: must match ^[a-z0-9_]{1,40}$", c.Queue)
		} else {
			queue = c.Queue
		}
	}
	context, ok := jsonValue(c.Context)
	if !ok {
		add(path+".context", "must be valid JSON")
	} else if len(context) > MaxJSONSize {
		add(path+".context", "must be at most %d bytes of JSON", MaxJSONSize)
	}
	for name, p := range c.ArgumentsFrom {
		if name == "" || len(p) == 0 || len(p) > maxPathLen {
			add(path+".argumentsFrom."+name, "a parameter name and a SQL/JSON path of 1 to %d characters", maxPathLen)
		}
	}
	params := make(map[string]admitParameter, len(c.Parameters))
	for name, p := range c.Parameters {
		switch p.Type {
		case "", "string", "number", "integer", "boolean", "object", "array":
		default:
			add(path+".parameters."+name+".type", "must be string, number, integer, boolean, object or array, not %q", p.Type)
		}
		params[name] = admitParameter(p)
	}
	for name, p := range c.Outputs {
		checkOutput(path+".outputs", name, p, add)
	}
	switch {
	case len(c.Steps) == 0:
		add(path+".steps", "at least one step is required")
		return nil
	case len(c.Steps) > MaxSteps:
		add(path+".steps", "at most %d steps are allowed, got %d", MaxSteps, len(c.Steps))
		return nil
	}
	return &admitChild{
		Template:      c.Template,
		Context:       context,
		ArgumentsFrom: c.ArgumentsFrom,
		Parameters:    params,
		Queue:         queue,
		Steps:         stepsDocument(c.Steps, queue, path+".steps", depth+1, add),
		Outputs:       c.Outputs,
	}
}

// checkOutput checks one declared output (TaskSpec.Outputs, ChildSpec.Outputs): a name of letters, digits, '_' and
// '-' (at most 63) and a SQL/JSON path, which PostgreSQL parses at admission.
func checkOutput(path, name, p string, add func(field, format string, args ...any)) {
	if !outputName.MatchString(name) {
		add(path, "%q is not a valid output name (letters, digits, _ and -, at most 63)", name)
	}
	if len(p) == 0 || len(p) > maxPathLen {
		add(path+"."+name, "a SQL/JSON path of 1 to %d characters", maxPathLen)
	}
}

var outputName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// maxPathLen bounds the SQL/JSON paths of steps (When, ForEach, a child's arguments and outputs).
const maxPathLen = 1024

var jsonNull = json.RawMessage("null")

// jsonValue returns v compacted (null when empty) and whether it is valid JSON.
func jsonValue(v json.RawMessage) (json.RawMessage, bool) {
	if len(bytes.TrimSpace(v)) == 0 {
		return jsonNull, true
	}
	if !json.Valid(v) {
		return nil, false
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return nil, false
	}
	return b.Bytes(), true
}
