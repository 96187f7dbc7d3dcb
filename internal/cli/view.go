// Package cli renders Tasks for people (taskerctl): a DAG tree with states, attempts, durations, errors and
// results, built from the database when the CLI has access to it, else from the Task's status.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/stepcounts"
)

// TaskView is what taskerctl shows of a Task; it is also the -o json|yaml document of `describe`.
type TaskView struct {
	Namespace   string     `json:"namespace"`
	Name        string     `json:"name"`
	Phase       string     `json:"phase"`
	Progress    string     `json:"progress"`
	TaskID      int64      `json:"taskID,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
	// Source says where step detail came from: "database" (every step, with results) or "status" (the first 50
	// steps, without results).
	Source     string                    `json:"source"`
	Counts     taskerv1alpha1.StepCounts `json:"counts"`
	Steps      []StepView                `json:"steps"`
	Conditions []ConditionView           `json:"conditions,omitempty"`
	// Concurrency is where the Task stands in its concurrency group (flow control), if it has one.
	Concurrency *ConcurrencyView `json:"concurrency,omitempty"`
	// QueueLimits are the limits of the Task's queues (Queue resources), where any are set.
	QueueLimits []QueueLimitView `json:"queueLimits,omitempty"`
	// Outputs are the Task's declared outputs once it has succeeded (spec.outputs).
	Outputs json.RawMessage `json:"outputs,omitempty"`
}

// StepView is one step.
type StepView struct {
	Name       string     `json:"name"`
	Handler    string     `json:"handler,omitempty"`
	State      string     `json:"state"`
	Queue      string     `json:"queue,omitempty"`
	Attempts   int        `json:"attempts"`
	DependsOn  []string   `json:"dependsOn,omitempty"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// NextAttemptAt is when an enqueued step with a delay, or a retrying step, becomes claimable.
	NextAttemptAt *time.Time      `json:"nextAttemptAt,omitempty"`
	Error         string          `json:"error,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"`
	// Map counts the instances of a map step (forEach) by state; total is the number of items.
	Map *taskerv1alpha1.StepCounts `json:"map,omitempty"`
	// Child is, for a step that runs a child workflow (template), its template and its steps counted by state.
	Child *taskerv1alpha1.ChildSummary `json:"child,omitempty"`
	// ChildOf names the step whose child workflow this step belongs to (its name is "<that step>/<own name>").
	ChildOf string `json:"childOf,omitempty"`
}

// ConditionView is one condition of the Task.
type ConditionView struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// FromStatus builds a view from the Task resource alone (no database access): dependencies come from
// spec.steps when the steps are inline.
func FromStatus(tk *taskerv1alpha1.Task) TaskView {
	v := base(tk)
	v.Source = "status"
	v.Concurrency = concurrencyFromStatus(tk.Status.Concurrency)
	if o := tk.Status.Outputs; o != nil {
		v.Outputs = json.RawMessage(o.Raw)
	}
	deps := map[string][]string{}
	handlers := map[string]string{}
	for _, s := range tk.Spec.Steps {
		deps[s.Name] = s.DependsOn
		handlers[s.Name] = s.Handler
	}
	for _, s := range tk.Status.Steps {
		sv := StepView{Name: s.Name, Handler: handlers[s.Name], State: s.State, Attempts: int(s.Attempts),
			DependsOn: deps[s.Name], Error: s.Message, Map: s.Map, Child: s.Child}
		if i := strings.LastIndex(s.Name, "/"); i > 0 {
			sv.ChildOf = s.Name[:i]
		}
		if s.StartedAt != nil {
			t := s.StartedAt.Time
			sv.StartedAt = &t
		}
		if s.FinishedAt != nil {
			t := s.FinishedAt.Time
			sv.FinishedAt = &t
		}
		if s.NextAttemptAt != nil {
			t := s.NextAttemptAt.Time
			sv.NextAttemptAt = &t
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

// ErrOtherDatabase: the database read holds another task under the Task's id (ids are per database, and the Task
// was admitted into another one).
var ErrOtherDatabase = errors.New("not in this database")

// CheckOwner returns an error wrapping ErrOtherDatabase unless st is the Task's engine task (admitted under its
// UID): with several databases, the same id names different tasks in each.
func CheckOwner(tk *taskerv1alpha1.Task, st *engine.TaskState) error {
	if st.ExternalKey == string(tk.UID) {
		return nil
	}
	db := tk.Status.Database
	if db == "" {
		db = taskerv1alpha1.DefaultDatabaseName
	}
	return fmt.Errorf("task %s/%s is %w: it was admitted into database %q; read that one", tk.Namespace, tk.Name,
		ErrOtherDatabase, db)
}

// FromEngine builds a view from the database's state of the Task (every step, with results).
func FromEngine(tk *taskerv1alpha1.Task, st *engine.TaskState) TaskView {
	v := base(tk)
	v.Source = "database"
	v.TaskID = st.ID
	v.StartedAt, v.CompletedAt = st.StartedAt, st.CompletedAt
	v.Concurrency = concurrencyFromEngine(st.Concurrency, st.Phase.Finished())
	for i := range st.Steps {
		s := &st.Steps[i]
		v.Steps = append(v.Steps, StepView{Name: s.Name, Handler: s.Handler, State: string(s.Phase), Attempts: s.Attempts,
			Queue: s.Queue, DependsOn: s.DependsOn, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Error: s.LastErrorMessage, Result: s.Result,
			NextAttemptAt: s.NextAttemptAt, Map: stepcounts.Map(s.Map), ChildOf: s.ChildOf})
		if c := s.Child; c != nil {
			v.Steps[len(v.Steps)-1].Child = &taskerv1alpha1.ChildSummary{Template: c.Template, Steps: stepcounts.Of(c.Steps, c.Counts)}
		}
	}
	v.Outputs = st.Outputs
	return v
}

func base(tk *taskerv1alpha1.Task) TaskView {
	v := TaskView{
		Namespace: tk.Namespace, Name: tk.Name, Phase: string(tk.Status.Phase), Progress: tk.Status.Progress,
		TaskID: tk.Status.TaskID, CreatedAt: tk.CreationTimestamp.Time, Counts: tk.Status.StepCounts,
	}
	if tk.Status.StartedAt != nil {
		t := tk.Status.StartedAt.Time
		v.StartedAt = &t
	}
	if tk.Status.CompletedAt != nil {
		t := tk.Status.CompletedAt.Time
		v.CompletedAt = &t
	}
	for _, c := range tk.Status.Conditions {
		v.Conditions = append(v.Conditions, ConditionView{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message})
	}
	return v
}
