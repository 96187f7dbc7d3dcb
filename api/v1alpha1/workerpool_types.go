package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WorkerPoolSpec declares a set of long-running workers for some queues, scaled by the queues' backlog.
type WorkerPoolSpec struct {
	// Queues the workers take steps from.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9_]{1,40}$`
	// +kubebuilder:validation:items:MaxLength=40
	// +required
	Queues []string `json:"queues"`

	// Slots is how many steps one worker runs at once. Default 4.
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	// +optional
	Slots int32 `json:"slots,omitempty"`

	// Database names the Secret holding the workers' connection string. Optional when the namespace's
	// TaskerDatabase has roleMode Shared: the operator then injects that database's Secret (copied into the
	// namespace as "<pool>-database"). Required for the --database-url database and for roleMode PerPool.
	// +optional
	Database *DatabaseSecretRef `json:"database,omitempty"`

	// Template is the worker Pod. The operator injects the queues, slots and database URL as environment
	// variables (TASKER_QUEUES, TASKER_SLOTS, TASKER_DATABASE_URL) into every container.
	// +required
	Template corev1.PodTemplateSpec `json:"template"`

	// Scaling says how replicas follow the backlog. Defaulted to {} so that its fields' defaults show in the object.
	// +kubebuilder:default={}
	// +optional
	Scaling ScalingSpec `json:"scaling,omitempty"`

	// TerminationGracePeriodSeconds is how long a worker may drain on scale-in (finish or release its running
	// steps) before it is killed. Set as the Pods' terminationGracePeriodSeconds. Default 60.
	// +kubebuilder:default=60
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	// +optional
	TerminationGracePeriodSeconds int64 `json:"terminationGracePeriodSeconds,omitempty"`
}

// DatabaseSecretRef points at a key of a Secret in the pool's namespace.
type DatabaseSecretRef struct {
	// SecretName is the Secret's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	SecretName string `json:"secretName"`
	// Key holding the PostgreSQL URL. Default "url".
	// +kubebuilder:default=url
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// ScalingSpec follows KEDA's semantics for queue-driven scaling.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",message="minReplicas must not be greater than maxReplicas",fieldPath=".minReplicas"
type ScalingSpec struct {
	// MinReplicas is the floor; 0 lets the pool scale to zero when idle. Default 0.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// MaxReplicas is the ceiling. Default 10.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`
	// TargetBacklogPerReplica is the backlog one replica is meant to carry. Default 10.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	TargetBacklogPerReplica *int32 `json:"targetBacklogPerReplica,omitempty"`
	// ActivationBacklog is the backlog above which a pool at zero gets its first replica. Default 0.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +optional
	ActivationBacklog *int32 `json:"activationBacklog,omitempty"`
	// PollingIntervalSeconds is how often the backlog is read. Default 15.
	// +kubebuilder:default=15
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	PollingIntervalSeconds *int32 `json:"pollingIntervalSeconds,omitempty"`
	// CooldownSeconds is how long the queues must be idle before the pool goes to zero. Default 300.
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	// +optional
	CooldownSeconds *int32 `json:"cooldownSeconds,omitempty"`
	// ScaleDownStabilizationSeconds: scale-down follows the highest proposal within this window, so a
	// saw-tooth backlog does not make the pool flap. Default 300.
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	ScaleDownStabilizationSeconds *int32 `json:"scaleDownStabilizationSeconds,omitempty"`
	// FallbackReplicas is used after FailureThreshold consecutive failures to read the backlog; unset keeps the
	// current count.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	FallbackReplicas *int32 `json:"fallbackReplicas,omitempty"`
	// FailureThreshold is the number of consecutive metric failures before FallbackReplicas applies. Default 3.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	FailureThreshold *int32 `json:"failureThreshold,omitempty"`
}

// Condition types of a WorkerPool.
const (
	WorkerPoolConditionReady            = "Ready"
	WorkerPoolConditionActive           = "Active"
	WorkerPoolConditionScalingLimited   = "ScalingLimited"
	WorkerPoolConditionMetricsAvailable = "MetricsAvailable"
)

// WorkerPoolStatus reports the backlog and the replicas.
type WorkerPoolStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Backlog is the number of messages in the pool's queues, in flight included. The counts are written even
	// when 0, so that `kubectl get workerpools` shows 0 rather than a blank column.
	// +optional
	Backlog int64 `json:"backlog"`
	// DatabaseQueues are the database queues the workers take steps from (their TASKER_QUEUES): each of
	// spec.queues as the namespace's own queue (named "<queue>_<hash>"), or under its own name where a cluster
	// administrator shared it; then, after an upgrade, the un-namespaced queues that still hold this namespace's
	// steps, until they are drained. Workers that are not run by the pool use these names.
	// +listType=atomic
	// +optional
	DatabaseQueues []string `json:"databaseQueues,omitempty"`
	// Database is the database the workers drain and the backlog is read from: the namespace's (a
	// TaskerDatabase's name, or "default" for the manager's --database-url).
	// +optional
	Database string `json:"database,omitempty"`
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`
	// +optional
	CurrentReplicas int32 `json:"currentReplicas"`
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// +optional
	LastScaleTime *metav1.Time `json:"lastScaleTime,omitempty"`
	// LastActiveTime is the last time the backlog was above zero.
	// +optional
	LastActiveTime *metav1.Time `json:"lastActiveTime,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// WorkerPool is a Deployment of workers for some queues that the operator owns and scales by the queues' backlog.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wp,categories=tasker
// +kubebuilder:printcolumn:name="Queues",type=string,JSONPath=`.spec.queues`
// +kubebuilder:printcolumn:name="Backlog",type=integer,JSONPath=`.status.backlog`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name: must be at most 63 characters: a WorkerPool's name is a label value of its Deployment and Pods"
type WorkerPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec WorkerPoolSpec `json:"spec"`
	// +optional
	Status WorkerPoolStatus `json:"status,omitempty"`
}

// WorkerPoolList contains a list of WorkerPool.
// +kubebuilder:object:root=true
type WorkerPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkerPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&WorkerPool{}, &WorkerPoolList{})
}
