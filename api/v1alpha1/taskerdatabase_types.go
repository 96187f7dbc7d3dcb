package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultDatabaseName names the database of the manager's --database-url. No TaskerDatabase may take the name.
const DefaultDatabaseName = "default"

// TaskerDatabaseSpec is one PostgreSQL database of the operator and the namespaces whose work it holds.
type TaskerDatabaseSpec struct {
	// SecretRef is the Secret with the operator's connection string (a PostgreSQL URL). The Secret is read when
	// the resource changes and at every probe (spec.probeIntervalSeconds), so a rotated password takes effect
	// without a restart.
	// +required
	SecretRef NamespacedSecretKeyRef `json:"secretRef"`

	// PoolSize is the size of the operator's connection pool to this database. Default 10.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=200
	// +optional
	PoolSize int32 `json:"poolSize,omitempty"`

	// RoleMode says which database role the workers of the namespaces' WorkerPools connect as.
	// Shared (the default): a WorkerPool without spec.database gets this resource's Secret, copied into its
	// namespace as "<pool>-database"; PerPool: every WorkerPool names its own Secret (spec.database), e.g. a worker
	// role granted only its queues (docs/tenancy.md), and the operator copies nothing.
	// +kubebuilder:default=Shared
	// +optional
	RoleMode DatabaseRoleMode `json:"roleMode,omitempty"`

	// NamespaceSelector selects the namespaces whose Tasks, TaskTemplates, CronTasks, Queues and WorkerPools use
	// this database. A namespace selected by two resources uses neither (both report it). A namespace moves between
	// databases only when it has no unfinished Task left in the old one: until then its new Tasks keep going there.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// Default makes this the database of every namespace no TaskerDatabase selects, in place of --database-url.
	// At most one resource may be the default; with two, neither is.
	// +optional
	Default bool `json:"default,omitempty"`

	// SkipMigrations leaves the schema to a DBA (as the manager's --skip-migrations): the operator only checks that
	// the schema is current. Default false: the operator migrates the database when the resource appears and at
	// every start.
	// +optional
	SkipMigrations bool `json:"skipMigrations,omitempty"`

	// ProbeIntervalSeconds is how often the operator checks that the database is reachable and reads its schema
	// version. Default 30.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=5
	// +kubebuilder:validation:Maximum=3600
	// +optional
	ProbeIntervalSeconds int32 `json:"probeIntervalSeconds,omitempty"`
}

// DatabaseRoleMode is TaskerDatabaseSpec.RoleMode.
// +kubebuilder:validation:Enum=Shared;PerPool
type DatabaseRoleMode string

// The role modes.
const (
	RoleModeShared  DatabaseRoleMode = "Shared"
	RoleModePerPool DatabaseRoleMode = "PerPool"
)

// NamespacedSecretKeyRef points at a key of a Secret in a namespace.
type NamespacedSecretKeyRef struct {
	// Namespace of the Secret (usually the operator's).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// Key holding the PostgreSQL URL. Default "url".
	// +kubebuilder:default=url
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// Condition types of a TaskerDatabase.
const (
	// DatabaseConditionReady: the database is reachable and its schema is the one this operator expects.
	DatabaseConditionReady = "Ready"
	// DatabaseConditionNamespacesBound: every namespace the resource selects uses it (False: a move waits for
	// unfinished Tasks, or another resource selects the namespace too).
	DatabaseConditionNamespacesBound = "NamespacesBound"
)

// MaxStatusNamespaces bounds TaskerDatabaseStatus.Namespaces.
const MaxStatusNamespaces = 100

// TaskerDatabaseStatus is what the operator last saw of the database.
type TaskerDatabaseStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// SchemaVersion is the database's migration version (0 until first read).
	// +optional
	SchemaVersion int64 `json:"schemaVersion,omitempty"`
	// LastProbeTime is when the database was last checked.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
	// NamespaceCount is how many namespaces use the database.
	// +optional
	NamespaceCount int32 `json:"namespaceCount,omitempty"`
	// Namespaces lists them, sorted, at most 100.
	// +kubebuilder:validation:MaxItems=100
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`
	// Conditions: Ready, NamespacesBound.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=tdb,categories=tasker
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Schema",type=integer,JSONPath=`.status.schemaVersion`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.namespaceCount`
// +kubebuilder:printcolumn:name="Default",type=boolean,JSONPath=`.spec.default`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name != 'default'",message="the name \"default\" is the --database-url database's"
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name: at most 63 characters (it labels metrics and Tasks)"

// TaskerDatabase is a PostgreSQL database the operator runs workflows in, and the namespaces bound to it.
type TaskerDatabase struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec TaskerDatabaseSpec `json:"spec"`
	// +optional
	Status TaskerDatabaseStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// TaskerDatabaseList is a list of TaskerDatabases.
type TaskerDatabaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TaskerDatabase `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TaskerDatabase{}, &TaskerDatabaseList{})
}
