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

	// Outputs declares what Tasks made from this template give when they succeed (as a Task's spec.outputs, which
	// wins): output name to a SQL/JSON path over {"steps": {<step>: <its result>}, "context": <the context>}. When
	// the template runs as a child workflow, they are its step's result.
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	Outputs map[string]string `json:"outputs,omitempty"`

	// Parameters are the template's typed inputs. A Task gives their values in spec.arguments; the steps see the
	// resolved values (the arguments, else the defaults) in their context under "params", e.g. `$.context.params.
	// region` in a condition.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Parameters []TemplateParameter `json:"parameters,omitempty"`
}

// ParameterType is the JSON type of a template parameter's value.
// +kubebuilder:validation:Enum=string;number;integer;boolean;object;array
type ParameterType string

// Parameter types.
const (
	ParameterString  ParameterType = "string"
	ParameterNumber  ParameterType = "number"
	ParameterInteger ParameterType = "integer"
	ParameterBoolean ParameterType = "boolean"
	ParameterObject  ParameterType = "object"
	ParameterArray   ParameterType = "array"
)

// TemplateParameter is one typed input of a TaskTemplate.
type TemplateParameter struct {
	// Name is how arguments and steps refer to it (under "params" in the context): letters, digits and '_',
	// not starting with a digit.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	// +required
	Name string `json:"name"`

	// Description says what the parameter is for.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// Type is the JSON type of the value. Default string.
	// +kubebuilder:default=string
	// +optional
	Type ParameterType `json:"type,omitempty"`

	// Required parameters must be given by every Task (and have no default).
	// +optional
	Required bool `json:"required,omitempty"`

	// Default is the value of a parameter a Task does not give (of the parameter's type). A parameter that is
	// neither required nor has a default is null when not given.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Default *apiextensionsv1.JSON `json:"default,omitempty"`

	// Enum, when set, lists the values allowed (each of the parameter's type).
	// +kubebuilder:validation:MaxItems=100
	// +listType=atomic
	// +optional
	Enum []apiextensionsv1.JSON `json:"enum,omitempty"`
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
	// UsedBy counts the Tasks in the namespace that reference this template: by spec.templateRef, or as the child
	// workflow of one of their own steps (not through another template).
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
// +kubebuilder:printcolumn:name="Generation",type=integer,JSONPath=`.metadata.generation`
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
