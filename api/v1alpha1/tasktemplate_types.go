package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TaskTemplateSpec is a reusable step graph. Tasks reference it with spec.templateRef and supply their context.
type TaskTemplateSpec struct {
	// Description says what the workflow does.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// Steps is the graph, with the same rules as a Task's steps. Editing it affects Tasks admitted afterwards
	// only.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1000
	// +required
	Steps []StepSpec `json:"steps"`

	// Queue is the default queue of the steps of Tasks made from this template, unless the Task names its own.
	// Default "default", applied by the operator when it admits a Task (with the Task's spec.queue, which wins).
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]{1,40}$`
	// +kubebuilder:validation:MaxLength=40
	// +optional
	Queue string `json:"queue,omitempty"`

	// Concurrency is the concurrency group of Tasks made from this template, unless the Task sets its own.
	// +optional
	Concurrency *ConcurrencySpec `json:"concurrency,omitempty"`

	// DefaultContext is merged under each Task's spec.context (the Task's keys win; objects only, shallow).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	DefaultContext *apiextensionsv1.JSON `json:"defaultContext,omitempty"`
}

// Condition types of a TaskTemplate.
const (
	TaskTemplateConditionReady = "Ready"
)

// TaskTemplateStatus reports whether the template is usable and by how many Tasks.
type TaskTemplateStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Steps is the number of steps in the template.
	// +optional
	Steps int32 `json:"steps,omitempty"`
	// UsedBy counts the Tasks in the namespace that reference this template.
	// +optional
	UsedBy int32 `json:"usedBy,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TaskTemplate is a named, reusable workflow graph.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tkt,categories=tasker
// +kubebuilder:printcolumn:name="Steps",type=integer,JSONPath=`.status.steps`
// +kubebuilder:printcolumn:name="Used By",type=integer,JSONPath=`.status.usedBy`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TaskTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TaskTemplateSpec `json:"spec"`
	// +optional
	Status TaskTemplateStatus `json:"status,omitempty"`
}

// TaskTemplateList contains a list of TaskTemplate.
// +kubebuilder:object:root=true
type TaskTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TaskTemplate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TaskTemplate{}, &TaskTemplateList{})
}
