package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConcurrencyPolicy says what a CronTask does when a run is due while Tasks it created earlier are unfinished.
// +kubebuilder:validation:Enum=Allow;Forbid;Replace
type ConcurrencyPolicy string

const (
	// ConcurrencyAllow creates the new Task alongside the running ones.
	ConcurrencyAllow ConcurrencyPolicy = "Allow"
	// ConcurrencyForbid skips the run while a Task created earlier is unfinished (as a CronJob does, the run is
	// made up once that Task finishes, if still within startingDeadlineSeconds).
	ConcurrencyForbid ConcurrencyPolicy = "Forbid"
	// ConcurrencyReplace cancels the unfinished Tasks (spec.cancel) and creates the new one.
	ConcurrencyReplace ConcurrencyPolicy = "Replace"
)

// Labels and annotations a CronTask puts on the Tasks it creates.
const (
	// CronTaskLabel names the CronTask that created a Task.
	CronTaskLabel = "tasker.dev/crontask"
	// ScheduledTimeAnnotation is the scheduled time (RFC 3339, UTC) a Task was created for.
	ScheduledTimeAnnotation = "tasker.dev/scheduled-time"
)

// CronTaskTaskSpec is the Task a CronTask creates at each scheduled time: the fields of a Task's spec that make
// sense in a template (no cancel, no actions). Unlike a Task's, they may be edited: the next Task uses the edit.
// +kubebuilder:validation:XValidation:rule="has(self.templateRef) != (has(self.steps) && size(self.steps) > 0)",message="exactly one of spec.task.steps or spec.task.templateRef must be set"
type CronTaskTaskSpec struct {
	// Labels are added to each created Task (besides tasker.dev/crontask).
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Steps is the graph of each created Task, with the same rules as a Task's spec.steps. At most 1000 steps.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	// +optional
	Steps []StepSpec `json:"steps,omitempty"`

	// TemplateRef takes the steps from a TaskTemplate in the same namespace, as a Task's spec.templateRef does.
	// +optional
	TemplateRef *TemplateReference `json:"templateRef,omitempty"`

	// Arguments are the created Tasks' spec.arguments: the values of the template's parameters (checked against
	// them when the CronTask is applied).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Arguments *apiextensionsv1.JSON `json:"arguments,omitempty"`

	// Queue is the created Tasks' spec.queue.
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]{1,40}$`
	// +kubebuilder:validation:MaxLength=40
	// +optional
	Queue string `json:"queue,omitempty"`

	// Context is the created Tasks' spec.context (free JSON, at most 64 KiB).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Context *apiextensionsv1.JSON `json:"context,omitempty"`

	// Concurrency is the created Tasks' spec.concurrency: e.g. a group with maxRunning 1 lets a slow run finish
	// before the next one starts (the next waits), where concurrencyPolicy Forbid skips it.
	// +optional
	Concurrency *ConcurrencySpec `json:"concurrency,omitempty"`

	// Outputs declares each created Task's outputs (a Task's spec.outputs). Default: the template's.
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	Outputs map[string]string `json:"outputs,omitempty"`

	// Priority is the created Tasks' spec.priority (-100..100).
	// +kubebuilder:validation:Minimum=-100
	// +kubebuilder:validation:Maximum=100
	// +optional
	Priority int32 `json:"priority,omitempty"`

	// TTLSecondsAfterFinished is the created Tasks' spec.ttlSecondsAfterFinished. The history limits apply as
	// well: whichever removes a finished Task first.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=31536000
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// CronTaskSpec creates a Task at each time of a cron schedule.
type CronTaskSpec struct {
	// Schedule in standard cron format (5 fields: minute hour day-of-month month day-of-week), or a macro:
	// @yearly, @monthly, @weekly, @daily, @hourly, @every <duration>. Set the time zone with timeZone, not with
	// a TZ= prefix.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.contains('TZ=')",message="spec.schedule cannot set a time zone (TZ= or CRON_TZ=): use spec.timeZone"
	// +required
	Schedule string `json:"schedule"`

	// TimeZone is the IANA name of the zone the schedule is read in (e.g. Europe/Berlin). Default: UTC.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +optional
	TimeZone *string `json:"timeZone,omitempty"`

	// Suspend stops creating Tasks; the ones already created go on. Scheduled times passed while suspended are
	// missed (at most one is made up on resuming, within startingDeadlineSeconds).
	// +kubebuilder:default=false
	// +optional
	Suspend *bool `json:"suspend,omitempty"`

	// StartingDeadlineSeconds is how late a run may still start, when the operator was down or the CronTask
	// suspended or forbidden to run at the scheduled time. Runs later than that are missed. Unset: a missed run
	// starts however late (only the most recent missed time gets a run).
	// +kubebuilder:validation:Minimum=0
	// +optional
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`

	// ConcurrencyPolicy: Allow (default), Forbid or Replace.
	// +kubebuilder:default=Allow
	// +optional
	ConcurrencyPolicy ConcurrencyPolicy `json:"concurrencyPolicy,omitempty"`

	// SuccessfulTasksHistoryLimit is how many succeeded Tasks to keep (the oldest are deleted). Default 3.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	SuccessfulTasksHistoryLimit *int32 `json:"successfulTasksHistoryLimit,omitempty"`

	// FailedTasksHistoryLimit is how many failed or cancelled Tasks to keep (the oldest are deleted). Default 1.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	FailedTasksHistoryLimit *int32 `json:"failedTasksHistoryLimit,omitempty"`

	// Task is what to run at each scheduled time.
	// +required
	Task CronTaskTaskSpec `json:"task"`
}

// Condition types of a CronTask.
const (
	// CronTaskConditionReady is True while the CronTask schedules (or is suspended on purpose), False when its
	// schedule or time zone is invalid.
	CronTaskConditionReady = "Ready"
	// CronTaskConditionStalled is True when the CronTask cannot schedule until its spec is fixed (kstatus).
	CronTaskConditionStalled = "Stalled"
)

// CronTaskActive is an unfinished Task the CronTask created.
type CronTaskActive struct {
	Name string `json:"name"`
	// ScheduledTime is the time the Task was created for.
	ScheduledTime metav1.Time `json:"scheduledTime"`
}

// CronTaskStatus reports the CronTask's runs.
type CronTaskStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastScheduleTime is the last scheduled time a Task was created for.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	// LastSuccessfulTime is when the last successful Task completed.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`
	// NextScheduleTime is the next scheduled time (unset while suspended or invalid).
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
	// Active lists the unfinished Tasks the CronTask created, oldest first.
	// +listType=atomic
	// +optional
	Active []CronTaskActive `json:"active,omitempty"`
	// ActiveCount is len(active), for kubectl's ACTIVE column.
	// +optional
	ActiveCount int32 `json:"activeCount,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// CronTask creates Tasks on a cron schedule, as a CronJob creates Jobs.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ctk,categories=tasker
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Timezone",type=string,JSONPath=`.spec.timeZone`,priority=1
// +kubebuilder:printcolumn:name="Suspend",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.activeCount`
// +kubebuilder:printcolumn:name="Last",type=date,JSONPath=`.status.lastScheduleTime`
// +kubebuilder:printcolumn:name="Next",type=string,JSONPath=`.status.nextScheduleTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 52",message="a CronTask's name is at most 52 characters: its Tasks are named <name>-<unix time>"
type CronTask struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec CronTaskSpec `json:"spec"`
	// +optional
	Status CronTaskStatus `json:"status,omitempty"`
}

// CronTaskList contains a list of CronTask.
// +kubebuilder:object:root=true
type CronTaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CronTask `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CronTask{}, &CronTaskList{})
}
