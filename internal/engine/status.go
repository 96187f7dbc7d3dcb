package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// TaskPhase is the state of a task.
type TaskPhase string

// Task states (docs/architecture.md has the state machine).
const (
	TaskPending   TaskPhase = "pending"   // admitted, no step claimed yet
	TaskRunning   TaskPhase = "running"   // a step has been claimed
	TaskSucceeded TaskPhase = "succeeded" // every step succeeded or was resolved
	TaskFailed    TaskPhase = "failed"    // a step failed for good; the others were stopped
	TaskCancelled TaskPhase = "cancelled" // cancelled by an operator
)

// Finished reports whether the phase is terminal (for now: a failed task resumes when an operator retries,
// resolves or completes its failed step).
func (p TaskPhase) Finished() bool {
	return p == TaskSucceeded || p == TaskFailed || p == TaskCancelled
}

// StepPhase is the state of a step.
type StepPhase string

// Step states (docs/architecture.md has the state machine).
const (
	StepPending   StepPhase = "pending"   // waiting for its dependencies
	StepEnqueued  StepPhase = "enqueued"  // its message is in the queue
	StepRunning   StepPhase = "running"   // claimed by a worker, under a lease
	StepRetrying  StepPhase = "retrying"  // an attempt failed; waiting for the backoff delay
	StepSucceeded StepPhase = "succeeded" // done, with a result
	StepFailed    StepPhase = "failed"    // failed for good
	StepCancelled StepPhase = "cancelled" // stopped: task cancelled, or failed elsewhere
	StepSkipped   StepPhase = "skipped"   // cannot run: a dependency failed
	StepResolved  StepPhase = "resolved"  // marked done by an operator
	StepOmitted   StepPhase = "omitted"   // not run: its condition (StepSpec.When) was false; done, no result
	StepWaiting   StepPhase = "waiting"   // waits for a signal (StepSpec.WaitFor); no message, no worker
	StepMapping   StepPhase = "mapping"   // a map step (StepSpec.ForEach) whose instances run, or a child workflow step (StepSpec.Child) whose child runs
)

// AllStepPhases lists the step states in their usual order of progress.
var AllStepPhases = []StepPhase{StepPending, StepEnqueued, StepRunning, StepRetrying, StepSucceeded, StepFailed,
	StepCancelled, StepSkipped, StepResolved, StepOmitted, StepWaiting, StepMapping}

// Finished reports whether the phase is terminal.
func (p StepPhase) Finished() bool {
	switch p {
	case StepSucceeded, StepFailed, StepCancelled, StepSkipped, StepResolved, StepOmitted:
		return true
	}
	return false
}

// TaskState is a task's full state, for status and CLIs.
type TaskState struct {
	ID              int64
	ExternalKey     string
	Namespace, Name string
	Queue           string
	Priority        int
	Phase           TaskPhase
	Context         json.RawMessage
	Retention       time.Duration
	CreatedAt       time.Time
	StartedAt       *time.Time
	CompletedAt     *time.Time
	// ExpiresAt is when upkeep deletes the finished task.
	ExpiresAt *time.Time
	UpdatedAt time.Time
	// Concurrency is where the task stands in its concurrency group (nil: it has none).
	Concurrency *ConcurrencyState
	// TraceContext is the task's W3C trace context (TaskSpec.TraceContext), nil when none.
	TraceContext map[string]string
	// Outputs is, for a succeeded task that declares outputs (TaskSpec.Outputs), their values as a JSON object;
	// nil otherwise.
	Outputs json.RawMessage
	// Counts has the number of steps in each state (states with no step are absent).
	Counts map[StepPhase]int
	// Steps in spec order.
	Steps []StepState
}

// Done returns the number of finished steps (any terminal state).
func (t *TaskState) Done() int {
	n := 0
	for p, c := range t.Counts {
		if p.Finished() {
			n += c
		}
	}
	return n
}

// Step returns the step of that name, or nil.
func (t *TaskState) Step(name string) *StepState {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return &t.Steps[i]
		}
	}
	return nil
}

// StepState is a step's state.
type StepState struct {
	ID          int64
	Name        string
	Handler     string
	Queue       string
	DependsOn   []string
	Phase       StepPhase
	Attempts    int
	MaxAttempts int
	Result      json.RawMessage
	// LastError is the error document of the last failed attempt ({"message": ..., "details": ...}), and
	// LastErrorMessage its message.
	LastError        json.RawMessage
	LastErrorMessage string
	WorkerID         string
	NextAttemptAt    *time.Time
	LeaseExpiresAt   *time.Time
	CreatedAt        time.Time
	// StartedAt is the start of the current (or last) attempt.
	StartedAt  *time.Time
	FinishedAt *time.Time
	UpdatedAt  time.Time
	// Map is, for a map step (StepSpec.ForEach) that has been expanded, its instances: nil otherwise. The
	// instances are not in TaskState.Steps.
	Map *MapState
	// Child is, for a child workflow step (StepSpec.Child), its template and, once expanded, how many of the
	// child's steps are in each state: nil for other steps. The child's steps are in TaskState.Steps, after the
	// task's own, named "<step>/<child step>".
	Child *ChildState
	// ChildOf names the child workflow step this step belongs to ("" for the task's own steps).
	ChildOf string
}

// ChildState is a child workflow step's child.
type ChildState struct {
	// Template is the TaskTemplate the child was taken from.
	Template string
	// Steps is the number of the child's steps once expanded (0 before; map instances not counted).
	Steps int
	// Counts has the number of the child's steps in each state (states with none are absent).
	Counts map[StepPhase]int
}

// MapState counts the instances of a map step.
type MapState struct {
	// Items is the number of instances (the length of the array the step's forEach gave).
	Items int
	// Counts has the number of instances in each state (states with none are absent).
	Counts map[StepPhase]int
}

// Done returns the number of finished instances.
func (m *MapState) Done() int {
	n := 0
	for p, c := range m.Counts {
		if p.Finished() {
			n += c
		}
	}
	return n
}

// GetTask returns a task's state with every step, from one consistent snapshot in one round trip.
func (e *Engine) GetTask(ctx context.Context, taskID int64) (*TaskState, error) {
	return e.readTask(ctx, sqlTaskByID, sqlStepsByTaskID, taskID, fmt.Sprintf("task %d not found", taskID))
}

// TaskByKey returns the state of the task admitted with that external key (see GetTask).
func (e *Engine) TaskByKey(ctx context.Context, externalKey string) (*TaskState, error) {
	return e.readTask(ctx, sqlTaskByKey, sqlStepsByTaskKey, externalKey,
		fmt.Sprintf("no task with external key %q", externalKey))
}

// TaskIDByIdempotencyKey returns the id of the task admitted in namespace with that idempotency key
// (TaskSpec.IdempotencyKey), or ErrTaskNotFound.
func (e *Engine) TaskIDByIdempotencyKey(ctx context.Context, namespace, key string) (int64, error) {
	return e.taskIDBy(ctx, "tasker.task_id_by_idempotency_key", sqlTaskIDByIdempotencyKey,
		fmt.Sprintf("no task with idempotency key %q in namespace %q", key, namespace), namespace, key)
}

// TaskIDByKey returns the id of the task admitted with that external key, or ErrTaskNotFound: one key lookup,
// for callers that need to know which task is theirs without its state.
func (e *Engine) TaskIDByKey(ctx context.Context, externalKey string) (int64, error) {
	return e.taskIDBy(ctx, "tasker.task_id_by_key", sqlTaskIDByKey, fmt.Sprintf("no task with external key %q", externalKey), externalKey)
}

func (e *Engine) taskIDBy(ctx context.Context, spanName, query, notFound string, args ...any) (_ int64, err error) {
	ctx, span := startSpan(ctx, spanName)
	defer func() { endSpan(span, err) }()
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	var id int64
	if err := e.pool.QueryRow(cctx, query, args...).Scan(&id); err != nil {
		if isNoRows(err) {
			return 0, fmt.Errorf("%w: %s", ErrTaskNotFound, notFound)
		}
		return 0, dbError(ctx, "task id", err)
	}
	return id, nil
}

func (e *Engine) readTask(ctx context.Context, taskSQL, stepsSQL string, arg any, notFound string) (_ *TaskState, err error) {
	ctx, span := startSpan(ctx, "tasker.read_task")
	if id, ok := arg.(int64); ok {
		span.SetAttributes(attrTask.Int64(id))
	}
	defer func() { endSpan(span, err) }()
	cctx, cancel := e.callCtx(ctx)
	defer cancel()

	// One round trip, one snapshot: the task row and its steps agree.
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	var (
		t         TaskState
		found     bool
		retention float64
		state     string
		priority  int32
		group     *string
		waiting   *bool
		ahead     *int64
		gmax      *int32
		grunning  *int32
	)
	b.Queue(taskSQL, arg).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&t.ID, &t.ExternalKey, &t.Namespace, &t.Name, &t.Queue, &priority, &t.Context, &state,
			new(int32), new(int32), &retention, &t.CreatedAt, &t.StartedAt, &t.CompletedAt, &t.ExpiresAt,
			&t.UpdatedAt, &t.TraceContext, &t.Outputs, &group, &waiting, &ahead, &gmax, &grunning)
		if isNoRows(err) {
			return nil
		}
		found = err == nil
		return err
	})
	b.Queue(stepsSQL, arg).Query(func(rows pgx.Rows) error {
		var err error
		t.Steps, err = pgx.CollectRows(rows, scanStep)
		return err
	})
	b.Queue(`COMMIT`)
	if err := e.pool.SendBatch(cctx, b).Close(); err != nil {
		return nil, dbError(ctx, "read task", err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, notFound)
	}
	if group != nil {
		t.Concurrency = &ConcurrencyState{Group: *group, Waiting: waiting != nil && *waiting}
		if ahead != nil {
			t.Concurrency.Ahead = int(*ahead)
		}
		if gmax != nil {
			t.Concurrency.MaxRunning = int(*gmax)
		}
		if grunning != nil {
			t.Concurrency.Running = int(*grunning)
		}
	}
	t.Phase = TaskPhase(state)
	t.Priority = int(priority)
	t.Retention = time.Duration(retention * float64(time.Second))
	t.Counts = make(map[StepPhase]int)
	for _, s := range t.Steps {
		t.Counts[s.Phase]++
	}
	return &t, nil
}

func scanStep(row pgx.CollectableRow) (StepState, error) {
	var (
		s                     StepState
		state                 string
		attempts, maxAttempts int32
		worker                *string
		mapSize               *int32
		mapCounts             map[string]int
	)
	var (
		template    *string
		childSize   *int32
		childCounts map[string]int
		childOf     *string
	)
	err := row.Scan(&s.ID, &s.Name, &s.Handler, &s.Queue, &state, &attempts, &maxAttempts, &s.Result, &s.LastError,
		&worker, &s.NextAttemptAt, &s.LeaseExpiresAt, &s.CreatedAt, &s.StartedAt, &s.FinishedAt, &s.UpdatedAt,
		&s.DependsOn, &mapSize, &mapCounts, &template, &childSize, &childCounts, &childOf)
	if err != nil {
		return s, err
	}
	if template != nil {
		s.Child = &ChildState{Template: *template, Counts: make(map[StepPhase]int, len(childCounts))}
		if childSize != nil {
			s.Child.Steps = int(*childSize)
		}
		for k, n := range childCounts {
			s.Child.Counts[StepPhase(k)] = n
		}
	}
	if childOf != nil {
		s.ChildOf = *childOf
	}
	if mapSize != nil {
		s.Map = &MapState{Items: int(*mapSize), Counts: make(map[StepPhase]int, len(mapCounts))}
		for k, n := range mapCounts {
			s.Map.Counts[StepPhase(k)] = n
		}
	}
	s.Phase = StepPhase(state)
	s.Attempts, s.MaxAttempts = int(attempts), int(maxAttempts)
	if worker != nil {
		s.WorkerID = *worker
	}
	s.LastErrorMessage = errorMessage(s.LastError)
	return s, nil
}

// errorMessage extracts the message of an error document: its "message" string when there is one, else the
// document itself (shortened).
func errorMessage(doc json.RawMessage) string {
	if len(doc) == 0 || string(doc) == "null" {
		return ""
	}
	var v struct {
		Message *string `json:"message"`
	}
	if json.Unmarshal(doc, &v) == nil && v.Message != nil {
		return *v.Message
	}
	s := strings.TrimSpace(string(doc))
	if len(s) > 1024 {
		s = s[:1024] + "..."
	}
	return s
}
