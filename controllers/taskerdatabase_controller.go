package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
)

// DatabaseConfig is what a TaskerDatabase asks of the operator's connection to its database.
type DatabaseConfig struct {
	URL            string
	PoolSize       int32
	SkipMigrations bool
	ProbeInterval  time.Duration
	// WorkerSecret is roleMode Shared's Secret for WorkerPools; nil for PerPool.
	WorkerSecret *taskerv1alpha1.NamespacedSecretKeyRef
}

// DatabaseProbe is the last check of a database.
type DatabaseProbe struct {
	At time.Time
	// Up: reachable, with the schema this operator expects.
	Up            bool
	SchemaVersion int
	// Message says why not up (safe for users).
	Message string
}

// DatabaseRegistry is what the TaskerDatabase controller asks of the operator's databases (the operator's
// Registry implements it).
type DatabaseRegistry interface {
	// Ensure connects to (or reconnects when cfg's connection changed) the named database and starts its
	// migration, upkeep, listener and probe. The error is safe to show users.
	Ensure(name string, cfg DatabaseConfig) error
	// Remove disconnects the named database.
	Remove(name string)
	// Probe returns the database's last check (false: not connected).
	Probe(name string) (DatabaseProbe, bool)
	// Binding says which database a namespace uses and why.
	Binding(ctx context.Context, namespace string) (Binding, error)
}

// Condition reasons of a TaskerDatabase.
const (
	DatabaseReasonReachable       = "Reachable"
	DatabaseReasonUnreachable     = "Unreachable"
	DatabaseReasonSecret          = "SecretUnavailable"
	DatabaseReasonInvalidURL      = "InvalidConnection"
	DatabaseReasonBound           = "Bound"
	DatabaseReasonMoveWaiting     = "MoveWaiting"
	DatabaseReasonConflict        = "SelectorConflict"
	DatabaseReasonInvalidSelector = "InvalidSelector"
)

// TaskerDatabaseReconciler connects the operator to each TaskerDatabase's database (through the Registry), and
// reports the database's reachability, schema version and bound namespaces.
type TaskerDatabaseReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// Registry holds the connections.
	Registry DatabaseRegistry
	// APIReader reads the connection Secrets (uncached: the operator does not watch Secrets). Default: the
	// manager's API reader.
	APIReader client.Reader
}

// +kubebuilder:rbac:groups=tasker.dev,resources=taskerdatabases,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=taskerdatabases/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=taskerdatabases/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile connects one TaskerDatabase and writes its status; it runs again at every probe interval.
func (r *TaskerDatabaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var td taskerv1alpha1.TaskerDatabase
	if err := r.Get(ctx, req.NamespacedName, &td); err != nil {
		if apierrors.IsNotFound(err) {
			r.Registry.Remove(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !td.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &td)
	}
	if !controllerutil.ContainsFinalizer(&td, DatabaseFinalizer) {
		controllerutil.AddFinalizer(&td, DatabaseFinalizer)
		if err := r.Update(ctx, &td); err != nil {
			return ctrl.Result{}, err
		}
	}
	orig := td.Status.DeepCopy()
	st := &td.Status
	st.ObservedGeneration = td.Generation
	gen := td.Generation
	interval := time.Duration(td.Spec.ProbeIntervalSeconds) * time.Second
	if interval <= 0 {
		interval = 30 * time.Second
	}
	result := ctrl.Result{RequeueAfter: interval}

	if url, err := r.connection(ctx, &td); err != nil {
		// A Secret that cannot be read leaves an existing connection alone (a rotation in progress, an RBAC slip).
		conditions.False(&st.Conditions, gen, taskerv1alpha1.DatabaseConditionReady, DatabaseReasonSecret, err.Error())
		result.RequeueAfter = min(interval, 10*time.Second)
	} else if err := r.Registry.Ensure(td.Name, r.config(&td, url, interval)); err != nil {
		conditions.False(&st.Conditions, gen, taskerv1alpha1.DatabaseConditionReady, DatabaseReasonInvalidURL, err.Error())
		result.RequeueAfter = min(interval, 2*time.Second)
	} else {
		p, _ := r.Registry.Probe(td.Name)
		if !p.At.IsZero() {
			st.LastProbeTime = ptr.To(metav1.NewTime(p.At.Truncate(time.Second)))
		}
		st.SchemaVersion = int64(p.SchemaVersion)
		switch {
		case p.Up:
			conditions.True(&st.Conditions, gen, taskerv1alpha1.DatabaseConditionReady, DatabaseReasonReachable,
				fmt.Sprintf("reachable, schema version %d", p.SchemaVersion))
		case p.At.IsZero():
			conditions.False(&st.Conditions, gen, taskerv1alpha1.DatabaseConditionReady, DatabaseReasonUnreachable, "connecting")
			result.RequeueAfter = min(interval, time.Second)
		default:
			conditions.False(&st.Conditions, gen, taskerv1alpha1.DatabaseConditionReady, DatabaseReasonUnreachable, p.Message)
			result.RequeueAfter = min(interval, 2*time.Second)
		}
	}
	if err := r.namespaces(ctx, &td); err != nil {
		return ctrl.Result{}, err
	}
	if !equality.Semantic.DeepEqual(orig, st) {
		if err := r.Status().Update(ctx, &td); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return result, nil
}

// DatabaseFinalizer keeps a deleted TaskerDatabase, and the operator's connection to it, until no unfinished Task
// is left in it.
const DatabaseFinalizer = "tasker.dev/database"

// DatabaseReasonDeleting: the resource is deleted and waits for its unfinished Tasks.
const DatabaseReasonDeleting = "WaitingForTasks"

// finalize disconnects a deleted TaskerDatabase once its unfinished Tasks are done; until then the connection
// stays (they keep running and reporting), no namespace is bound to it anew, and Ready says what it waits for.
func (r *TaskerDatabaseReconciler) finalize(ctx context.Context, td *taskerv1alpha1.TaskerDatabase) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(td, DatabaseFinalizer) {
		r.Registry.Remove(td.Name)
		return ctrl.Result{}, nil
	}
	var list taskerv1alpha1.TaskList
	if err := r.List(ctx, &list, client.MatchingFields{databaseIndex: td.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	if n := len(list.Items); n > 0 {
		var namespaces []string
		for i := range list.Items {
			if ns := list.Items[i].Namespace; !slices.Contains(namespaces, ns) {
				namespaces = append(namespaces, ns)
			}
		}
		slices.Sort(namespaces)
		orig := td.Status.DeepCopy()
		conditions.False(&td.Status.Conditions, td.Generation, taskerv1alpha1.DatabaseConditionReady, DatabaseReasonDeleting,
			fmt.Sprintf("deleted: disconnects when its %d unfinished Task(s) finish (namespaces %s)", n,
				strings.Join(namespaces[:min(len(namespaces), 5)], ", ")))
		if !equality.Semantic.DeepEqual(orig, &td.Status) {
			if err := r.Status().Update(ctx, td); err != nil {
				return ctrl.Result{}, client.IgnoreNotFound(err)
			}
		}
		return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
	}
	r.Registry.Remove(td.Name)
	controllerutil.RemoveFinalizer(td, DatabaseFinalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Update(ctx, td))
}

// connection reads the URL from the resource's Secret.
func (r *TaskerDatabaseReconciler) connection(ctx context.Context, td *taskerv1alpha1.TaskerDatabase) (string, error) {
	ref := td.Spec.SecretRef
	key := ref.Key
	if key == "" {
		key = defaultDatabaseKey
	}
	var s corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &s); err != nil {
		return "", fmt.Errorf("spec.secretRef: cannot read Secret %s/%s: %s", ref.Namespace, ref.Name, apiErrorMessage(err))
	}
	url := strings.TrimSpace(string(s.Data[key]))
	if url == "" {
		return "", fmt.Errorf("spec.secretRef: Secret %s/%s has no key %q", ref.Namespace, ref.Name, key)
	}
	return url, nil
}

func (r *TaskerDatabaseReconciler) config(td *taskerv1alpha1.TaskerDatabase, url string, interval time.Duration) DatabaseConfig {
	cfg := DatabaseConfig{URL: url, PoolSize: td.Spec.PoolSize, SkipMigrations: td.Spec.SkipMigrations, ProbeInterval: interval}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 10
	}
	if td.Spec.RoleMode != taskerv1alpha1.RoleModePerPool {
		ref := td.Spec.SecretRef
		if ref.Key == "" {
			ref.Key = defaultDatabaseKey
		}
		cfg.WorkerSecret = &ref
	}
	return cfg
}

// namespaces fills status.namespaces and the NamespacesBound condition: the namespaces using the database, and
// those it selects that do not (a move waiting for unfinished Tasks, a namespace two resources select).
func (r *TaskerDatabaseReconciler) namespaces(ctx context.Context, td *taskerv1alpha1.TaskerDatabase) error {
	gen := td.Generation
	var sel labels.Selector
	if s := td.Spec.NamespaceSelector; s != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(s); err != nil {
			conditions.False(&td.Status.Conditions, gen, taskerv1alpha1.DatabaseConditionNamespacesBound,
				DatabaseReasonInvalidSelector, "spec.namespaceSelector: "+err.Error())
			sel = nil
		}
	}
	var list corev1.NamespaceList
	if err := r.List(ctx, &list); err != nil {
		return err
	}
	var bound, waiting []string
	conflict := false
	for i := range list.Items {
		ns := &list.Items[i]
		b, err := r.Registry.Binding(ctx, ns.Name)
		if err != nil {
			return err
		}
		if b.Database == td.Name {
			bound = append(bound, ns.Name)
		}
		selects := sel != nil && !sel.Empty() && sel.Matches(labels.Set(ns.Labels))
		if (b.Wanted == td.Name && b.MoveWaits()) || (selects && b.Problem != "") {
			waiting = append(waiting, b.Reason(ns.Name))
			conflict = conflict || b.Conflict
		}
	}
	slices.Sort(bound)
	td.Status.NamespaceCount = int32(len(bound))
	td.Status.Namespaces = bound[:min(len(bound), taskerv1alpha1.MaxStatusNamespaces)]
	if sel == nil && td.Spec.NamespaceSelector != nil {
		return nil // InvalidSelector set above
	}
	switch {
	case len(waiting) > 0:
		slices.Sort(waiting)
		msg := strings.Join(waiting[:min(len(waiting), 5)], "; ")
		if len(waiting) > 5 {
			msg += fmt.Sprintf("; and %d more", len(waiting)-5)
		}
		reason := DatabaseReasonMoveWaiting
		if conflict {
			reason = DatabaseReasonConflict
		}
		conditions.False(&td.Status.Conditions, gen, taskerv1alpha1.DatabaseConditionNamespacesBound, reason, msg)
	default:
		conditions.True(&td.Status.Conditions, gen, taskerv1alpha1.DatabaseConditionNamespacesBound, DatabaseReasonBound,
			fmt.Sprintf("%d namespace(s) use this database", len(bound)))
	}
	return nil
}

// SetupWithManager watches TaskerDatabases, and Namespaces (a label change can bind or move one).
func (r *TaskerDatabaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Registry == nil {
		return errors.New("TaskerDatabaseReconciler needs a Registry")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	all := func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list taskerv1alpha1.TaskerDatabaseList
		if err := r.List(ctx, &list); err != nil {
			logf.FromContext(ctx).Error(err, "listing TaskerDatabases")
			return nil
		}
		reqs := make([]reconcile.Request, len(list.Items))
		for i := range list.Items {
			reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}}
		}
		return reqs
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.TaskerDatabase{}).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(all)).
		Named("taskerdatabase").
		Complete(r)
}
