// Package controllers holds one reconciler per kind. Reconcilers are thin: they read the custom resource, call
// the engine, and write status; everything about workflows lives in internal/engine.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// TaskFinalizer keeps a Task until its workflow is cancelled in the engine.
const TaskFinalizer = "tasker.dev/cancel-in-engine"

// templateNameIndex indexes Tasks by the TaskTemplates they reference: spec.templateRef, and the templates their
// inline steps run as child workflows.
const templateNameIndex = "spec.templateRef.name"

// Defaults of TaskReconciler.
const (
	// DefaultStatusInterval is the shortest time between two status writes of one Task: however many steps
	// change, the apiserver sees at most about one write per second per Task. While a Task runs, the gap between
	// progress writes doubles after each (1 s, 2 s, 4 s, up to maxStatusGapFactor x the interval), so short Tasks
	// cost one to three writes in all; the final state, actions' outcomes and database outages are written at
	// once.
	DefaultStatusInterval = time.Second
	// maxStatusGapFactor caps the growing gap between progress writes (10 s by default).
	maxStatusGapFactor = 10
	// DefaultResyncInterval re-reads unfinished Tasks from the database even without notifications, in case one
	// was lost (notifications are not delivered while the listener reconnects).
	DefaultResyncInterval = 2 * time.Minute
	// templateRetryInterval is how soon a Task whose TaskTemplate is missing looks again (template creation also
	// triggers it at once), and a Task refused because the CRDs are outdated.
	templateRetryInterval = 30 * time.Second
)

// Condition reasons of a Task.
const (
	ReasonAdmitted         = "Admitted"
	ReasonTemplateNotFound = "TemplateNotFound"
	ReasonInvalidTemplate  = "InvalidTemplate"
	// ReasonTemplateGeneration: spec.templateRef.generation pins a generation the template is not at.
	ReasonTemplateGeneration = "TemplateGenerationMismatch"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonReachable          = "Reachable"
	ReasonUnreachable        = "Unreachable"
	ReasonNotReady           = "DatabaseNotReady"
	// ReasonNoDatabase: no database serves the Task's namespace, or the one it was admitted into is gone.
	ReasonNoDatabase = "NoDatabase"
	// ReasonCRDOutdated: a step lacks a value the CRD schema defaults, so the CRD in the cluster is older than the
	// operator.
	ReasonCRDOutdated = "CRDOutdated"
)

// DatabaseGate tells whether the database is ready for use (migrated). The operator's start-up migration
// implements it; nil means always ready.
type DatabaseGate interface {
	// Ready returns nil when ready, else why not (a message safe for users).
	Ready() error
}

// TaskReconciler admits Tasks into the engine and writes their status from the database.
type TaskReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// Databases gives each Task its database: its namespace's when admitted, then the one recorded in
	// status.database. Nil: Tasks report that no database is configured.
	Databases Databases
	Recorder  events.EventRecorder
	// Queues maps the Tasks' queue names to database queues (their namespace's own unless shared). The zero
	// Scope shares none.
	Queues queuescope.Scope

	// StatusInterval and ResyncInterval: see DefaultStatusInterval and DefaultResyncInterval.
	StatusInterval time.Duration
	ResyncInterval time.Duration
	// Clock tells the time (status pacing, TTL after finishing, action records). Default: the real clock.
	Clock clock.PassiveClock

	writes  sync.Map // types.NamespacedName -> statusWrites: when the status may next be written
	taskIDs sync.Map // engineTask{database, id} -> types.NamespacedName, to route notifications
	ids     sync.Map // types.NamespacedName -> ownTask: the engine task found under the Task's UID
	// dbBackoff spaces the reconciles of a Task while PostgreSQL is unreachable (see afterDatabaseError).
	dbBackoff workqueue.TypedRateLimiter[types.NamespacedName]
	changes   chan event.GenericEvent
}

// +kubebuilder:rbac:groups=tasker.dev,resources=tasks,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=tasks/finalizers,verbs=update
// +kubebuilder:rbac:groups=tasker.dev,resources=tasktemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Task's engine state and status together.
func (r *TaskReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	log := logf.FromContext(ctx)
	var task taskerv1alpha1.Task
	if err := r.Get(ctx, req.NamespacedName, &task); err != nil {
		if apierrors.IsNotFound(err) {
			r.writes.Delete(req.NamespacedName)
			r.ids.Delete(req.NamespacedName)
			r.dbBackoff.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx, endTrace := r.traceReconcile(ctx, &task)
	defer func() { endTrace(err) }()
	if !task.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &task)
	}
	if !controllerutil.ContainsFinalizer(&task, TaskFinalizer) {
		patch := client.MergeFrom(task.DeepCopy())
		controllerutil.AddFinalizer(&task, TaskFinalizer)
		if err := r.Patch(ctx, &task, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	old := task.Status.DeepCopy()
	status := &task.Status
	status.ObservedGeneration = task.Generation
	if status.Phase == "" {
		status.Phase = taskerv1alpha1.TaskPending
	}

	db, err := r.taskDatabase(ctx, &task)
	if err != nil {
		reason, wait := ReasonNoDatabase, 10*time.Second
		if !errors.Is(err, ErrNoDatabase) {
			reason, wait = ReasonNotReady, 2*time.Second
		}
		conditions.False(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, reason, err.Error())
		return r.writeStatus(ctx, &task, old, ctrl.Result{RequeueAfter: wait}, true)
	}
	if status.Database != db.Name {
		// With several databases, recorded before admission, so that the Task stays in this database whatever its
		// namespace's binding becomes (a move waits for the namespace's unfinished Tasks, which this one is from
		// now on). With one, nothing can move: it goes out with the status after admission, saving a write.
		status.Database = db.Name
		if status.TaskID == 0 && r.Databases.Several() {
			if err := r.Status().Update(ctx, &task); err != nil {
				if apierrors.IsConflict(err) {
					return ctrl.Result{RequeueAfter: 50 * time.Millisecond}, nil // a stale read: again with the current object
				}
				return ctrl.Result{}, err
			}
		}
	}
	eng := db.Tasks

	// Which engine task is this Task's: the one admitted under its UID. status.taskID only records it (whoever may
	// write tasks/status could point it at another namespace's workflow), so it is never trusted, and corrected.
	id, err := r.engineTaskID(ctx, eng, &task)
	if err != nil {
		r.databaseDown(&task, err)
		_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
		return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
	}
	switch {
	case status.TaskID == 0 || status.TaskID == id:
		// Not recorded yet (admission below finds the task again if there is one, and says so), or recorded right.
	case id == 0:
		// Nothing under the UID although the status names a task: this Task's, deleted by retention while the CR
		// lives on (then no task has that id any more: nothing left to report, and nothing to admit again), or
		// another Task's (then this Task is admitted as if the status were empty).
		_, err := eng.GetTask(ctx, status.TaskID)
		switch {
		case errors.Is(err, engine.ErrTaskNotFound):
			log.V(1).Info("task no longer in the database", "taskID", status.TaskID)
			return ctrl.Result{}, nil
		case err != nil:
			r.databaseDown(&task, err)
			_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
			return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
		}
		log.Info("status.taskID named another Task's engine task: ignored", "statusTaskID", status.TaskID)
		status.TaskID = 0
	default:
		log.Info("status.taskID named another Task's engine task: corrected", "statusTaskID", status.TaskID, "taskID", id)
		status.TaskID = id
	}

	// Admission: once, keyed by the UID, so repeats (resyncs, restarts, a lost status write) find the same task.
	if status.TaskID == 0 {
		result, done, err := r.admit(ctx, eng, &task)
		if err != nil || !done {
			if err != nil && r.databaseDown(&task, err) {
				_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
				return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
			}
			if err != nil {
				return ctrl.Result{}, err
			}
			return r.writeStatus(ctx, &task, old, result, true)
		}
	}

	r.taskIDs.Store(engineTask{db.Name, status.TaskID}, req.NamespacedName)

	// Manual interventions, each once per id.
	actionsRan, err := r.runActions(ctx, eng, &task)
	if err != nil {
		r.databaseDown(&task, err)
		_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
		return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
	}
	if task.Spec.Cancel && !finished(status.Phase) {
		if err := eng.Cancel(ctx, status.TaskID, "spec.cancel set on the Task"); err != nil && !errors.Is(err, engine.ErrTaskNotFound) {
			r.databaseDown(&task, err)
			_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
			return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
		}
	}

	st, err := eng.GetTask(ctx, status.TaskID)
	if err != nil {
		if errors.Is(err, engine.ErrTaskNotFound) {
			// Deleted by retention while the CR lives on: nothing left to report.
			log.V(1).Info("task no longer in the database", "taskID", status.TaskID)
			return ctrl.Result{}, nil
		}
		r.databaseDown(&task, err)
		_, werr := r.writeStatus(ctx, &task, old, ctrl.Result{}, true)
		return r.afterDatabaseError(ctx, req.NamespacedName, err, werr)
	}
	r.dbBackoff.Forget(req.NamespacedName)
	linkTaskTrace(ctx, st.TraceContext)
	conditions.True(&status.Conditions, task.Generation, taskerv1alpha1.TaskConditionDatabaseReachable, ReasonReachable, "")
	applyEngineState(status, st)
	r.setOutcomeConditions(&task, st)

	if old.Phase != status.Phase {
		r.phaseEvents(&task, old.Phase, st)
		if finished(status.Phase) {
			observeFinished(st)
		}
	}
	result := ctrl.Result{}
	if !finished(status.Phase) {
		result.RequeueAfter = r.resyncInterval()
		if status.Phase == taskerv1alpha1.TaskRunning {
			// Workers announce only task-level changes (started, finished, ...): a running Task's step progress
			// is read at the pace its status may be written anyway.
			result.RequeueAfter = min(result.RequeueAfter, r.statusGap(req.NamespacedName))
		}
	} else if ttl := task.Spec.TTLSecondsAfterFinished; ttl != nil && status.CompletedAt != nil {
		expiry := status.CompletedAt.Add(time.Duration(*ttl) * time.Second)
		if !finished(old.Phase) {
			// Seen finished for the first time (maybe well after it finished: a busy or restarted operator): the
			// final status goes out first and stays for the TTL, so that watchers (kubectl wait, GitOps health)
			// see how it ended before it goes.
			expiry = latest(expiry, r.now().Add(time.Duration(*ttl)*time.Second))
		}
		if wait := expiry.Sub(r.now()); wait > 0 {
			result.RequeueAfter = wait
		} else {
			log.Info("deleting finished Task after ttlSecondsAfterFinished", "ttl", *ttl)
			return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, &task, client.Preconditions{UID: &task.UID}))
		}
	}
	// A finished Task's last status, an action's outcome and a recovered database go out at once; progress is
	// coalesced.
	urgent := actionsRan || finished(status.Phase) != finished(old.Phase) ||
		conditions.IsTrue(status.Conditions, taskerv1alpha1.TaskConditionDatabaseReachable) !=
			conditions.IsTrue(old.Conditions, taskerv1alpha1.TaskConditionDatabaseReachable) && old.TaskID != 0
	return r.writeStatus(ctx, &task, old, result, urgent)
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// engineTask names an engine task: task ids are per database.
type engineTask struct {
	database string
	id       int64
}

// taskDatabase is the Task's database, ready for use: the one recorded in its status, else (admitted before
// databases were recorded) the default one, else (not admitted yet) its namespace's.
func (r *TaskReconciler) taskDatabase(ctx context.Context, task *taskerv1alpha1.Task) (Database, error) {
	if r.Databases == nil {
		return Database{}, errNoDatabases
	}
	var (
		db  Database
		err error
	)
	switch {
	case task.Status.Database != "":
		db, err = r.Databases.Named(task.Status.Database)
	case task.Status.TaskID != 0:
		db, err = r.Databases.Named(taskerv1alpha1.DefaultDatabaseName)
	default:
		db, err = r.Databases.ForNamespace(ctx, task.Namespace)
	}
	if err != nil {
		return Database{}, err
	}
	if err := db.Ready(); err != nil {
		return Database{}, fmt.Errorf("database %s: %w", db.Name, err)
	}
	return db, nil
}

// Backoff of a Task's reconciles while PostgreSQL is unreachable: 1 s, doubling, at most 30 s.
const (
	dbRetryFirst = time.Second
	dbRetryMax   = 30 * time.Second
)

// SetupIndexes registers the cache indexes the controllers query (once per manager).
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &taskerv1alpha1.Task{}, templateNameIndex, templateNameOf); err != nil {
		return err
	}
	return mgr.GetFieldIndexer().IndexField(ctx, &taskerv1alpha1.Task{}, databaseIndex, unfinishedDatabaseOf)
}

// templateNameOf is the templateNameIndex of a Task: the TaskTemplate it references, if any, and those its inline
// steps run as child workflows (a Task waiting for one is admitted as soon as it appears; templates a template
// runs are not indexed: such a Task looks again every templateRetryInterval).
func templateNameOf(o client.Object) []string {
	tk := o.(*taskerv1alpha1.Task)
	var names []string
	if ref := tk.Spec.TemplateRef; ref != nil {
		names = append(names, ref.Name)
	}
	for i := range tk.Spec.Steps {
		if t := tk.Spec.Steps[i].Template; t != "" && !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	return names
}

// SetupWithManager registers the reconciler and the channel fed by engine notifications. SetupIndexes must have
// run.
func (r *TaskReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.changes = make(chan event.GenericEvent, 1024)
	r.dbBackoff = newDBBackoff()
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.Task{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			predicate.LabelChangedPredicate{}, deletionPredicate{}))).
		Watches(&taskerv1alpha1.TaskTemplate{}, handler.EnqueueRequestsFromMapFunc(r.tasksWaitingForTemplate)).
		WatchesRawSource(source.Channel(r.changes, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{
			// Reconciles wait on the apiserver and the database, not the CPU.
			MaxConcurrentReconciles: 16,
			// Errors retry from 100 ms up to every 30 s, not controller-runtime's default of 16 min (an unreachable
			// database has its own quiet backoff, afterDatabaseError).
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, 30*time.Second),
		}).
		Named("task").
		Complete(r)
}

// deletionPredicate passes updates that set a deletion timestamp (finalizers must run).
type deletionPredicate struct{ predicate.Funcs }

func (deletionPredicate) Update(e event.UpdateEvent) bool {
	return e.ObjectNew.GetDeletionTimestamp() != nil
}

func (r *TaskReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}
