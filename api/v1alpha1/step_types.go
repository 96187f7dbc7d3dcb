package v1alpha1

import (
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Limits shared by the CRD schema, the admission webhook and the engine.
const (
	// MaxSteps is the largest number of steps in one Task or TaskTemplate. It bounds the work of admission and
	// the size of the object in etcd.
	MaxSteps = 1000
	// MaxContextBytes is the largest serialised spec.context (and per-step inputs) accepted, so that a Task stays
	// far below etcd's 1.5 MiB object limit.
	MaxContextBytes = 64 * 1024
	// QueueNamePattern is the rule for queue names: stricter than pgmq's own, so no name ever needs quoting in SQL.
	QueueNamePattern = `^[a-z0-9_]{1,40}$`
	// StepNamePattern is the rule for step names (a DNS label).
	StepNamePattern = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// DefaultQueue is the queue of steps that name none, in a Task that names none.
	DefaultQueue = "default"
	// DefaultBackoffMax caps the retry delay of a step whose backoff names no max (or the base, when that is
	// larger). The operator applies it at admission: unlike the other step defaults, which the CRD schema sets, it
	// depends on another field.
	DefaultBackoffMax = 5 * time.Minute
)

// StepSpec is one node of a workflow's graph.
// +kubebuilder:validation:XValidation:rule="!has(self.dependsOn) || !(self.name in self.dependsOn)",message="a step cannot depend on itself",fieldPath=".dependsOn"
// +kubebuilder:validation:XValidation:rule="[has(self.handler), has(self.wait), has(self.template)].filter(x, x).size() == 1",message="a step runs a handler, waits for a signal (wait) or runs a child workflow (template): exactly one of the three",fieldPath=".handler"
// +kubebuilder:validation:XValidation:rule="!has(self.argumentsFrom) || has(self.template)",message="argumentsFrom gives a child workflow's parameters: it needs template",fieldPath=".argumentsFrom"
// +kubebuilder:validation:XValidation:rule="!has(self.forEach) || !has(self.wait)",message="a step that waits for a signal (wait) cannot map (forEach)",fieldPath=".forEach"
type StepSpec struct {
	// Name identifies the step within its Task: a DNS label, unique among the Task's steps.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// Handler is the name a worker registered the code for this step under (e.g. "echo", "billing.charge").
	// Required, unless the step waits for a signal (wait) or runs a child workflow (template).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.:/-]*$`
	// +optional
	Handler string `json:"handler,omitempty"`

	// Wait makes the step wait for a signal instead of running a handler: an approval gate, or a callback from an
	// outside system. When the step becomes ready it is "waiting" — no worker, nothing polls — until the signal is
	// sent (a Signal action in spec.actions, `taskerctl signal`, or SQL tasker.signal), which completes it with the
	// signal's payload as its result. A signal sent before the step waits is kept and completes it when it
	// becomes ready; only the first signal of a name counts.
	// +optional
	Wait *WaitSpec `json:"wait,omitempty"`

	// DependsOn lists the steps that must succeed (or be resolved manually) before this one runs.
	// Every entry must name another step of the same Task; cycles are rejected at admission.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +optional
	DependsOn []string `json:"dependsOn,omitempty"`

	// Inputs is free JSON handed to the handler.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Inputs *apiextensionsv1.JSON `json:"inputs,omitempty"`

	// Retry says how often and how fast a failing step is tried again. Default: {}, whose fields take their own
	// defaults (3 attempts, backoff from 1s doubling to 5m, 20% jitter), so every stored step shows the policy it
	// runs with.
	// +kubebuilder:default={}
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`

	// TimeoutSeconds bounds one attempt: a handler still running after it is failed (retryably). Default 3600.
	// +kubebuilder:default=3600
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=604800
	// +optional
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`

	// Queue overrides the Task's queue for this step, so one workflow can span several worker pools.
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]{1,40}$`
	// +kubebuilder:validation:MaxLength=40
	// +optional
	Queue string `json:"queue,omitempty"`

	// DelaySeconds makes the step wait this long, each time it becomes ready (its dependencies finished, the Task
	// started or resumed, or an operator retried it), before it can run. The wait is the queue's: the step's
	// message is invisible until then, no worker holds it, and it survives restarts of everything. Up to a year;
	// unset or 0: none.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=31536000
	// +optional
	DelaySeconds *int32 `json:"delaySeconds,omitempty"`

	// When is a condition: the step runs only if it holds when the step becomes ready, else it is omitted —
	// finished without running, its dependents see a null result (Argo's "Omitted"), which is not "skipped" (an
	// upstream step failed). A SQL/JSON path predicate, evaluated by PostgreSQL over
	// {"context": <the Task's context>, "deps": {<dependency>: <its result>}}, e.g.
	// `$.deps.review.approved == true`, `$.context.region == "eu"`, `exists($.deps.lookup.coupon)`; an unknown
	// result (e.g. comparing a string with a number) counts as false. Checked at admission.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	When string `json:"when,omitempty"`

	// ForEach makes the step a map: it runs once per element of the array this SQL/JSON path gives over
	// {"context": <the Task's context>, "deps": {<dependency>: <its result>}} when the step becomes ready, e.g.
	// `$.deps.list.files` or `$.context.regions`. Each element is an instance, named "<step>[<index>]", that
	// receives the element and its index (besides the step's inputs and its dependencies' results), runs in
	// parallel with the others and retries on its own; the step succeeds once all have, with their results as one
	// array in index order, which its dependents receive. An empty array finishes the step at once with []; a path
	// that gives no array, or one of more than 10,000 elements, fails the step. Status shows the map as one line
	// with counts. Checked at admission.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	ForEach string `json:"forEach,omitempty"`

	// Template makes the step run a child workflow: the steps of this TaskTemplate (in the Task's namespace), read
	// when the Task is admitted, with it (recursively: a template's steps may run templates too, at most 5 deep; a
	// template that reaches itself is refused). When the step becomes ready its child's steps join the Task, named
	// "<step>/<child step>", with the template's context and the parameters (arguments, argumentsFrom, the
	// template's defaults) under "params"; the step waits for them (mapping) and succeeds with the child's outputs
	// (the template's spec.outputs; without any, its last steps' results by name), which its dependents receive. A
	// child step that fails for good fails the child: the step runs the child again, afresh, after its backoff,
	// as its retry policy allows, then fails. Retry, resolve and complete reach the child's steps by their "<step>/<child step>"
	// names; cancel stops them with the Task. With forEach, every instance runs the child ($.item gives its
	// element to argumentsFrom).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	Template string `json:"template,omitempty"`

	// Arguments give the child template's parameters (template) values: a JSON object, parameter name to value,
	// checked against the template's parameters when the Task is admitted.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Arguments *apiextensionsv1.JSON `json:"arguments,omitempty"`

	// ArgumentsFrom gives the child template's parameters values taken when the step becomes ready: parameter name
	// to a SQL/JSON path over {"context": <the Task's context>, "deps": {<dependency>: <its result>}, "item": <the
	// element, for a forEach instance>}, e.g. `$.deps.list.count`. A path that finds nothing, or a value of the
	// wrong type, fails the step (naming the argument).
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	ArgumentsFrom map[string]string `json:"argumentsFrom,omitempty"`

	// NotBefore is the earliest time the step can run (RFC 3339, e.g. "2026-12-24T18:00:00Z"); with
	// delaySeconds, the later of the two. A time already past does not delay it.
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
}

// WaitSpec is what a step waits for.
type WaitSpec struct {
	// Signal is the name of the signal the step waits for.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`
	// +required
	Signal string `json:"signal"`

	// TimeoutSeconds bounds each wait: past it the attempt fails and the retry policy applies (a retry waits
	// again; with the default policy, three waits in all, then the Task fails). Unset: no limit.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=31536000
	// +optional
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

// RetryPolicy governs retries of a step that fails with a retryable error.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt too: 1 means never retry. Default 3.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxAttempts *int32 `json:"maxAttempts,omitempty"`

	// Backoff between attempts: base·2^(attempt-1), capped at max, with ±jitter. A retry-after given by the
	// handler wins over it. Default: {}, whose fields take their own defaults.
	// +kubebuilder:default={}
	// +optional
	Backoff *Backoff `json:"backoff,omitempty"`
}

// Backoff is an exponential backoff with jitter.
// +kubebuilder:validation:XValidation:rule="!has(self.base) || !has(self.max) || duration(self.base) <= duration(self.max)",message="base must not be greater than max (base defaults to 1s)",fieldPath=".base"
type Backoff struct {
	// Base is the delay before the second attempt (e.g. "500ms", "2s"). Range 10ms to 1h; default 1s.
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('1h')",message="must be between 10ms and 1h"
	// +optional
	Base *metav1.Duration `json:"base,omitempty"`

	// Max caps the delay. Range 10ms to 24h. Default: 5m, or base when that is larger, applied by the operator
	// when it admits the Task; it is left unset in the object, since a schema default cannot depend on base (and a
	// fixed 5m would refuse every base above it).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('24h')",message="must be between 10ms and 24h"
	// +optional
	Max *metav1.Duration `json:"max,omitempty"`

	// JitterPercent spreads retries of many steps apart: each delay is varied by up to ± this share; 0 turns
	// jitter off. Default 20.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	JitterPercent *int32 `json:"jitterPercent,omitempty"`
}
