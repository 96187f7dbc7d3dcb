package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TaskSpec declares a workflow: a graph of steps, given inline or by a TaskTemplate.
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) != (has(self.steps) && size(self.steps) > 0)",message="exactly one of spec.steps or spec.templateRef must be set"
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) == has(oldSelf.templateRef)",message="spec.templateRef cannot be added or removed after creation"
// +kubebuilder:validation:XValidation:rule="has(self.queue) == has(oldSelf.queue) && (!has(self.queue) || self.queue == oldSelf.queue)",message="spec.queue is immutable once the Task is created",fieldPath=".queue"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",message="a cancelled Task cannot be un-cancelled",fieldPath=".cancel"
// +kubebuilder:validation:XValidation:rule="has(self.idempotencyKey) == has(oldSelf.idempotencyKey) && (!has(self.idempotencyKey) || self.idempotencyKey == oldSelf.idempotencyKey)",message="spec.idempotencyKey is immutable once the Task is created",fieldPath=".idempotencyKey"
type TaskSpec struct {
	// Steps is the workflow's graph. Immutable once created: a running workflow never changes shape under its
	// workers. At most 1000 steps.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.steps is immutable once the Task is created"
	// +optional
	Steps []StepSpec `json:"steps,omitempty"`

	// TemplateRef takes the steps from a TaskTemplate in the same namespace. The template is read once, when the
	// Task is admitted; later edits of the template do not change admitted Tasks.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.templateRef is immutable once the Task is created"
	// +optional
	TemplateRef *TemplateReference `json:"templateRef,omitempty"`

	// Queue is the default queue of the Task's steps (immutable). Default: the template's queue, else "default",
	// applied by the operator when it admits the Task; it is left unset in the object, since a schema default
	// cannot depend on the TaskTemplate.
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]{1,40}$`
	// +kubebuilder:validation:MaxLength=40
	// +optional
	Queue string `json:"queue,omitempty"`

	// Context is free JSON input of the whole Task, handed to every step (at most 64 KiB).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Context *apiextensionsv1.JSON `json:"context,omitempty"`

	// IdempotencyKey names the workflow run, uniquely in the namespace: a Task whose key was admitted already
	// (by this Task, or by one deleted since — a TTL, and a GitOps controller applying it again) is bound to that
	// run — its status shows the run's outcome, nothing runs twice — for as long as the database keeps the run
	// (its retention, 7 days by default). Tasks with the same key are one run: deleting any of them while it runs
	// cancels it. Unset: every Task object is a run of its own (keyed by its UID). Immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	IdempotencyKey string `json:"idempotencyKey,omitempty"`

	// Arguments give the template's parameters (spec.templateRef) their values: a JSON object, parameter name to
	// value. Checked against the template's parameters when the Task is applied (unknown, missing required, wrong
	// type or not in the enum: refused, naming the argument); the steps see the resolved parameters — these
	// arguments and the defaults of the others — in their context, under "params".
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Arguments *apiextensionsv1.JSON `json:"arguments,omitempty"`

	// Outputs declares what the Task gives when it succeeds: output name to a SQL/JSON path over {"steps":
	// {<step>: <its result>}, "context": <the context>}, e.g. `$.steps.report.url`; a path that finds nothing gives
	// null. They appear in status.outputs (at most 16 KiB) and are what a parent's step receives when this Task's
	// template runs as a child workflow. Default: the template's.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.outputs is immutable once the Task is created"
	// +optional
	Outputs map[string]string `json:"outputs,omitempty"`

	// Priority orders Tasks competing for the same workers; higher runs first. Range -100..100, default 0.
	// +kubebuilder:validation:Minimum=-100
	// +kubebuilder:validation:Maximum=100
	// +optional
	Priority int32 `json:"priority,omitempty"`

	// TTLSecondsAfterFinished deletes the Task this long after it succeeded, failed or was cancelled (and at least
	// this long after its final status was written).
	// Unset keeps it until deleted by hand.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=31536000
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`

	// Concurrency puts the Task in a concurrency group (flow control): at most maxRunning Tasks of the group run
	// at once, the others wait in admission order. Default: the template's. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.concurrency is immutable once the Task is created"
	// +optional
	Concurrency *ConcurrencySpec `json:"concurrency,omitempty"`

	// Cancel stops the Task: steps not yet finished are cancelled and running handlers are told to stop.
	// Cancellation is final: setting it back to false is rejected.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// Actions are manual interventions (retry, resolve, complete a step). Each has an id and runs once: the ids
	// done are listed in status.actions, so re-applying the same manifest does nothing.
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Actions []TaskAction `json:"actions,omitempty"`
}

// TemplateReference names a TaskTemplate in the Task's namespace.
type TemplateReference struct {
	// Name of the TaskTemplate.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Generation pins the template's version: the Task is admitted only from the TaskTemplate at exactly this
	// metadata.generation (it waits, with a condition saying why, while the template is at another). Unset: the
	// template as it is when the Task is admitted. Either way the Task records the generation and a hash of the
	// template it was admitted from in status.template.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Generation *int64 `json:"generation,omitempty"`
}

// TemplateOrigin is the TaskTemplate version a Task was admitted from.
type TemplateOrigin struct {
	// Name of the TaskTemplate.
	Name string `json:"name"`
	// Generation is the template's metadata.generation at admission.
	Generation int64 `json:"generation"`
	// Hash identifies the template's spec at admission ("sha256:" and 16 hex digits): equal hashes, equal specs.
	Hash string `json:"hash"`
}

// TaskActionType is a kind of manual intervention.
// +kubebuilder:validation:Enum=Retry;Resolve;Complete;Signal
type TaskActionType string

const (
	// ActionRetry runs a failed step again (optionally with new inputs); the Task resumes from there.
	ActionRetry TaskActionType = "Retry"
	// ActionResolve marks a step resolved by hand: its dependants proceed as if it had succeeded.
	ActionResolve TaskActionType = "Resolve"
	// ActionComplete completes a step with the given result, as a worker would.
	ActionComplete TaskActionType = "Complete"
	// ActionSignal sends a signal (with result as its payload) to the steps that wait for it.
	ActionSignal TaskActionType = "Signal"
)

// TaskAction is one manual intervention on a step, or a signal to the steps waiting for it.
// +kubebuilder:validation:XValidation:rule="self.type == 'Signal' ? (has(self.signal) && !has(self.step)) : (has(self.step) && !has(self.signal))",message="a Signal action names a signal and no step; the others name a step and no signal"
type TaskAction struct {
	// ID makes the action idempotent: an action runs once per id. Any unique string (a date, a counter).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +required
	ID string `json:"id"`

	// Type of the action.
	// +required
	Type TaskActionType `json:"type"`

	// Step the action applies to (not for type Signal): a step of spec.steps, or a step of a child workflow by
	// its full name ("<step>/<child step>"), or a map instance ("<step>[<index>]").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=384
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\[[0-9]{1,5}\])?(/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\[[0-9]{1,5}\])?)*$`
	// +optional
	Step string `json:"step,omitempty"`

	// Signal to send, for type Signal (only): the steps that wait for it (wait.signal) continue.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`
	// +optional
	Signal string `json:"signal,omitempty"`

	// Result of the step, for type Complete, or the signal's payload, for type Signal (only).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Result *apiextensionsv1.JSON `json:"result,omitempty"`

	// Inputs, for type Retry (only), replace the step's inputs before it runs again: the way to fix the input
	// that made it fail, since spec.steps is immutable. The change is recorded in the step's history.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Inputs *apiextensionsv1.JSON `json:"inputs,omitempty"`

	// Reason is recorded in the step's history.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Reason string `json:"reason,omitempty"`
}

// TaskPhase is the Task's overall state.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Cancelled
type TaskPhase string

const (
	TaskPending   TaskPhase = "Pending"
	TaskRunning   TaskPhase = "Running"
	TaskSucceeded TaskPhase = "Succeeded"
	TaskFailed    TaskPhase = "Failed"
	TaskCancelled TaskPhase = "Cancelled"
)

// Condition types of a Task.
const (
	TaskConditionAdmitted          = "Admitted"
	TaskConditionSucceeded         = "Succeeded"
	TaskConditionFailed            = "Failed"
	TaskConditionCancelled         = "Cancelled"
	TaskConditionDatabaseReachable = "DatabaseReachable"
	// TaskConditionReady summarises the Task the way kstatus (Flux, kubectl wait, Argo CD) reads objects: True
	// once it succeeded; False while it waits or runs (the reason says which) and when it failed or was cancelled.
	TaskConditionReady = "Ready"
	// TaskConditionStalled is True when the Task failed or was cancelled: it will not become Ready by itself
	// (kstatus reads that as failed, rather than in progress).
	TaskConditionStalled = "Stalled"
)

// MaxStepSummaries is how many steps status lists one by one; beyond it only counts are kept, so the status of
// a 1,000-step Task stays small.
const MaxStepSummaries = 50

// StepCounts counts a Task's steps by state.
type StepCounts struct {
	Total     int32 `json:"total"`
	Pending   int32 `json:"pending,omitempty"`
	Enqueued  int32 `json:"enqueued,omitempty"`
	Running   int32 `json:"running,omitempty"`
	Retrying  int32 `json:"retrying,omitempty"`
	Succeeded int32 `json:"succeeded,omitempty"`
	Failed    int32 `json:"failed,omitempty"`
	Cancelled int32 `json:"cancelled,omitempty"`
	Skipped   int32 `json:"skipped,omitempty"`
	Resolved  int32 `json:"resolved,omitempty"`
	// Omitted steps did not run: their condition (when) was false.
	Omitted int32 `json:"omitted,omitempty"`
	// Waiting steps wait for a signal.
	Waiting int32 `json:"waiting,omitempty"`
	// Mapping steps (forEach) wait for their instances.
	Mapping int32 `json:"mapping,omitempty"`
}

// StepSummary is the state of one step, as the database had it at the last status write.
type StepSummary struct {
	Name string `json:"name"`
	// State is one of pending, enqueued, running, retrying, succeeded, failed, cancelled, skipped, resolved,
	// omitted, waiting, mapping.
	State string `json:"state"`
	// Map counts the instances of a map step (forEach) by state, total being the number of items: one line
	// however many instances there are.
	// +optional
	Map *StepCounts `json:"map,omitempty"`
	// Child is, for a step that runs a child workflow (template), its template and its steps counted by state
	// (total 0 until it starts). The child's steps follow the Task's own in steps, named "<step>/<child step>".
	// +optional
	Child    *ChildSummary `json:"child,omitempty"`
	Attempts int32         `json:"attempts,omitempty"`
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// NextAttemptAt is when an enqueued step with a delay, or a retrying step, becomes claimable.
	// +optional
	NextAttemptAt *metav1.Time `json:"nextAttemptAt,omitempty"`
	// Message is the last error, trimmed to 256 characters.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Message string `json:"message,omitempty"`
}

// ChildSummary is a child workflow's state in a step summary.
type ChildSummary struct {
	// Template is the TaskTemplate the child was taken from.
	Template string `json:"template"`
	// Steps counts the child's steps by state.
	Steps StepCounts `json:"steps"`
}

// ActionStatus records a manual action that was carried out (or refused).
type ActionStatus struct {
	ID string `json:"id"`
	// Outcome is Done or Rejected.
	Outcome string `json:"outcome"`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Message string      `json:"message,omitempty"`
	Time    metav1.Time `json:"time"`
}

// TaskStatus is a bounded summary of the Task's state in the database.
type TaskStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase TaskPhase `json:"phase,omitempty"`
	// Progress is "done/total" steps, for kubectl's STEPS column.
	// +optional
	Progress string `json:"progress,omitempty"`
	// TaskID is the engine's id of the Task in the database.
	// +optional
	TaskID int64 `json:"taskID,omitempty"`
	// Database is the database the Task was admitted into: a TaskerDatabase's name, or "default" (the manager's
	// --database-url). Chosen by the Task's namespace before admission, and kept.
	// +optional
	Database string `json:"database,omitempty"`
	// +optional
	StepCounts StepCounts `json:"stepCounts,omitempty"`
	// Template is the TaskTemplate version the Task was admitted from (spec.templateRef).
	// +optional
	Template *TemplateOrigin `json:"template,omitempty"`
	// Steps summarises the first 50 steps; beyond that only stepCounts are kept.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	Steps []StepSummary `json:"steps,omitempty"`
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// Concurrency is where the Task stands in its concurrency group, if it has one.
	// +optional
	Concurrency *ConcurrencyStatus `json:"concurrency,omitempty"`
	// Outputs are the values of spec.outputs (or the template's) once the Task has succeeded: a JSON object of at
	// most 16 KiB (larger outputs are left out here; `taskerctl describe` reads them from the database).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Outputs *apiextensionsv1.JSON `json:"outputs,omitempty"`
	// Actions lists the manual actions carried out, by id.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Actions []ActionStatus `json:"actions,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Task is a workflow run: a graph of steps that workers execute through PostgreSQL queues.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tk,categories=tasker
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Steps",type=string,JSONPath=`.status.progress`,description="steps done/total"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Task struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TaskSpec `json:"spec"`
	// +optional
	Status TaskStatus `json:"status,omitempty"`
}

// TaskList contains a list of Task.
// +kubebuilder:object:root=true
type TaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Task `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Task{}, &TaskList{})
}
