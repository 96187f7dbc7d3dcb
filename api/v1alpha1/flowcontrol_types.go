package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConcurrencyStrategy says what happens to a Task of a full concurrency group.
// +kubebuilder:validation:Enum=Queue;CancelInProgress;CancelNewest
type ConcurrencyStrategy string

const (
	// ConcurrencyQueue: the new Task waits for a slot, behind the group's earlier waiters.
	ConcurrencyQueue ConcurrencyStrategy = "Queue"
	// ConcurrencyCancelInProgress: the group's oldest running Tasks are cancelled to make room for the new one
	// (as GitHub Actions' cancel-in-progress).
	ConcurrencyCancelInProgress ConcurrencyStrategy = "CancelInProgress"
	// ConcurrencyCancelNewest: the new Task is cancelled at once.
	ConcurrencyCancelNewest ConcurrencyStrategy = "CancelNewest"
)

// ConcurrencySpec puts a Task in a concurrency group: at most maxRunning unfinished Tasks of the group run at
// once; the others wait for a slot, in the order they were admitted. Enforced by the database for every worker.
// Groups belong to the Task's namespace.
type ConcurrencySpec struct {
	// Group names the group (lower-case letters, digits, '-', '_', '.'; at most 63).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`
	// +required
	Group string `json:"group"`

	// Key, if set, divides the group by a value of the Task's context: a SQL/JSON path over
	// {"context": <spec.context>}, e.g. `$.context.customer`, giving a string, number or boolean. Tasks with
	// different values never wait for each other. Evaluated once, at admission (a Task whose context has no such
	// value is not admitted). At most 1024 characters.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Key string `json:"key,omitempty"`

	// MaxRunning is how many Tasks of the group (of one key value) may run at once. 1 to 10000, default 1.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:default=1
	// +optional
	MaxRunning int32 `json:"maxRunning,omitempty"`

	// Strategy when the group is full: Queue (default: wait), CancelInProgress (cancel the oldest running Task)
	// or CancelNewest (cancel this Task).
	// +kubebuilder:default=Queue
	// +optional
	Strategy ConcurrencyStrategy `json:"strategy,omitempty"`
}

// ConcurrencyStatus is where a Task stands in its concurrency group.
type ConcurrencyStatus struct {
	// Group is the group's key in the database: "<namespace>/<group>", then "=<key value>" with a key.
	Group string `json:"group"`
	// Waiting is true while the Task waits for a slot: none of its steps is enqueued yet.
	// +optional
	Waiting bool `json:"waiting,omitempty"`
	// Ahead is how many of the group's waiting Tasks were admitted before this one.
	// +optional
	Ahead int32 `json:"ahead,omitempty"`
	// Running is the number of the group's Tasks holding a slot, of MaxRunning.
	// +optional
	Running int32 `json:"running,omitempty"`
	// +optional
	MaxRunning int32 `json:"maxRunning,omitempty"`
}

// QueueRate bounds how fast steps of a queue start: steps per perSeconds, with bursts of up to steps (a token
// bucket).
type QueueRate struct {
	// Steps that may start per perSeconds; also the largest burst. 1 to 1000000.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +required
	Steps int32 `json:"steps"`
	// PerSeconds is the period of the rate, in seconds: 1 to 86400, default 1.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	// +kubebuilder:default=1
	// +optional
	PerSeconds int32 `json:"perSeconds,omitempty"`
}

// QueueSpec sets the limits of one of the namespace's queues, for all the workers that serve it.
// +kubebuilder:validation:XValidation:rule="has(self.maxRunning) || has(self.rate)",message="set maxRunning, rate or both"
type QueueSpec struct {
	// Queue is the name of the queue, as Tasks and WorkerPools name it. Default: the Queue's own name (which must
	// then be a valid queue name). Immutable.
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]{1,40}$`
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.queue is immutable"
	// +optional
	Queue string `json:"queue,omitempty"`

	// MaxRunning bounds the queue's steps running at once, across all workers (and pools) that serve it.
	// Unset: no bound. 1 to 1000000.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxRunning *int32 `json:"maxRunning,omitempty"`

	// Rate bounds how fast the queue's steps start. Unset: no bound.
	// +optional
	Rate *QueueRate `json:"rate,omitempty"`
}

// Condition types and reasons of a Queue.
const (
	// QueueConditionReady is True once the limits are in force in the database.
	QueueConditionReady = "Ready"
)

// QueueStatus reports the limits in force and what they hold back.
type QueueStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// DatabaseQueue is the queue's name in the database (namespaced, see docs/tenancy.md).
	// +optional
	DatabaseQueue string `json:"databaseQueue,omitempty"`
	// Running is the number of the queue's steps running at the last reading.
	// +optional
	Running int32 `json:"running,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Queue sets limits on one of the namespace's queues: how many of its steps may run at once and how fast they
// may start, whatever worker claims them. The limits are a property of the work the queue feeds (an API's rate
// limit, a database's connections), not of a WorkerPool: several pools may serve one queue.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tq,categories=tasker
// +kubebuilder:validation:XValidation:rule="has(self.spec.queue) || self.metadata.name.matches('^[a-z0-9_]{1,40}$')",message="spec.queue is required when the Queue's name is not a queue name (^[a-z0-9_]{1,40}$)"
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.status.databaseQueue`,priority=1
// +kubebuilder:printcolumn:name="Max Running",type=integer,JSONPath=`.spec.maxRunning`
// +kubebuilder:printcolumn:name="Rate",type=integer,JSONPath=`.spec.rate.steps`,description="steps per rate.perSeconds"
// +kubebuilder:printcolumn:name="Per Seconds",type=integer,JSONPath=`.spec.rate.perSeconds`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.running`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Queue struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec QueueSpec `json:"spec"`
	// +optional
	Status QueueStatus `json:"status,omitempty"`
}

// QueueName is the queue the Queue limits: spec.queue, else its name.
func (q *Queue) QueueName() string {
	if q.Spec.Queue != "" {
		return q.Spec.Queue
	}
	return q.Name
}

// QueueList contains a list of Queue.
// +kubebuilder:object:root=true
type QueueList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Queue `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Queue{}, &QueueList{})
}
