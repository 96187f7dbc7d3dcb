package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/poolmetrics"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/scaling"
)

// Defaults of WorkerPoolReconciler.
const (
	// DefaultQueryTimeout bounds one backlog reading (all of a pool's queues) or one worker-record query. A
	// reading normally takes a millisecond or two; when PostgreSQL is unreachable the reconcile must not hang
	// on it, since all pools share a few reconcile workers.
	DefaultQueryTimeout = 5 * time.Second
	// DefaultWorkerStaleAfter: a worker record whose last heartbeat is older is not believed (the worker is
	// treated as unknown). Three times a 20 s record heartbeat.
	DefaultWorkerStaleAfter = 60 * time.Second
	// maxDeferredScaleIns is how many readings in a row a scale-in waits for the Pods to be ranked before it goes
	// ahead unranked.
	maxDeferredScaleIns = 2
	// defaultPollingInterval is the API default of spec.scaling.pollingIntervalSeconds.
	defaultPollingInterval = 15 * time.Second
)

// WorkerPoolReconciler owns each WorkerPool's Deployment and scales it by the backlog of the pool's queues.
//
// Every pool is polled every pollingIntervalSeconds (RequeueAfter) through Metrics (on the one connection pool
// shared by every pool). The scaler's memory (readings inside the stabilization window, recent scale events,
// consecutive failures) is kept per pool in memory, keyed by the pool's UID, and dropped when the pool goes. The reconciler is the only
// writer of the Deployment's spec.replicas.
type WorkerPoolReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// Databases gives each pool its namespace's database: its Metrics read the backlogs and the worker records
	// (a *poolmetrics.Reader on the connection pool shared by all WorkerPools of that database), and its
	// WorkerSecret is what pools without spec.database get. Nil: no backlog can be read; pools keep their replica
	// count and report MetricsAvailable=False.
	Databases Databases
	// APIReader reads Pods (uncached) at scale-in. Default: the manager's API reader.
	APIReader client.Reader
	// Recorder emits the pools' Events. Default: the manager's recorder named "workerpool-controller".
	Recorder events.EventRecorder
	// QueryTimeout bounds each database reading. Default DefaultQueryTimeout.
	QueryTimeout time.Duration
	// WorkerStaleAfter is the age after which a worker record is ignored. Default DefaultWorkerStaleAfter.
	WorkerStaleAfter time.Duration
	// Clock tells the time (polling, stabilization windows, cooldowns). Default: the real clock.
	Clock clock.PassiveClock
	// Queues maps the pools' queue names to database queues (their namespace's own unless shared). The zero
	// Scope shares none.
	Queues queuescope.Scope

	mu    sync.Mutex
	pools map[types.UID]*poolState
}

// poolState is the reconciler's memory of one pool.
type poolState struct {
	key     types.NamespacedName
	history scaling.History
	// lastPoll is when the backlog was last read (successfully or not), polledGeneration the pool's generation then.
	lastPoll         time.Time
	polledGeneration int64
	// last is the outcome of the last reading, for the conditions between readings.
	last reading
	// deferredScaleIns counts consecutive scale-ins put off because the Pods could not be ranked.
	deferredScaleIns int
	// legacy lists the pool's queues under their un-namespaced names that still held steps of the pool's
	// namespace at the last successful reading (see poolmetrics.LegacyQueues): the workers drain them too.
	legacy []string
}

type reading struct {
	decision scaling.Decision
	backlog  poolmetrics.Backlog
	// failReason/failMessage describe a failed reading for MetricsAvailable (never the raw error).
	failReason, failMessage string
}

// +kubebuilder:rbac:groups=tasker.dev,resources=workerpools,verbs=get;list;watch
// +kubebuilder:rbac:groups=tasker.dev,resources=workerpools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=workerpools/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one WorkerPool's Deployment and status up to date, and reads the backlog and rescales when
// the pool's polling interval has passed (or its spec changed).
func (r *WorkerPoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var pool taskerv1alpha1.WorkerPool
	if err := r.Get(ctx, req.NamespacedName, &pool); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !pool.DeletionTimestamp.IsZero() {
		// The Deployment goes with the pool (owner reference, garbage collector); nothing to clean up but memory.
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	orig := pool.DeepCopy()
	now := r.now()
	spec := scalingSpec(pool.Spec.Scaling)
	interval := pollingInterval(pool.Spec.Scaling)

	var dep appsv1.Deployment
	exists := true
	if err := r.Get(ctx, req.NamespacedName, &dep); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		exists = false
	}
	if exists && !metav1.IsControlledBy(&dep, &pool) {
		setPoolCondition(&pool, taskerv1alpha1.WorkerPoolConditionReady, metav1.ConditionFalse, reasonDeploymentConflict,
			fmt.Sprintf("Deployment %q exists and is not controlled by this WorkerPool; delete or rename it", dep.Name))
		return ctrl.Result{RequeueAfter: interval}, r.writeStatus(ctx, orig, &pool)
	}
	pd := r.poolDatabase(ctx, &pool)
	if pd.problem != "" {
		setPoolCondition(&pool, taskerv1alpha1.WorkerPoolConditionReady, metav1.ConditionFalse, reasonDatabaseSecret, pd.problem)
		return ctrl.Result{RequeueAfter: interval}, r.writeStatus(ctx, orig, &pool)
	}
	pool.Status.Database = pd.db.Name
	current := int32(0)
	if exists {
		current = ptr.Deref(dep.Spec.Replicas, 1)
	}

	st, isNew := r.state(&pool)
	if isNew && exists {
		var lastActive time.Time
		if pool.Status.LastActiveTime != nil {
			lastActive = pool.Status.LastActiveTime.Time
		}
		st.history.Seed(spec, now, current, lastActive)
	}

	desired := current
	if !exists || st.lastPoll.IsZero() || st.polledGeneration != pool.Generation ||
		now.Sub(st.lastPoll) >= interval-pollSlack(interval) {
		st.last = r.read(ctx, &pool, pd.db.Metrics, pd.dbErr, st, spec, now, current)
		st.lastPoll, st.polledGeneration = now, pool.Generation
		desired = st.last.decision.Desired
	}

	// Drain-aware scale-in: rank the Pods by their workers' load before the ReplicaSet picks which to delete.
	// (Not when going to zero: every Pod goes.)
	if exists && desired < current && desired > 0 {
		n, err := r.markPodsForScaleIn(ctx, &pool, pd.db.Metrics)
		switch {
		case err == nil:
			st.deferredScaleIns = 0
			log.V(1).Info("ranked pods for scale-in", "patched", n)
		case st.deferredScaleIns < maxDeferredScaleIns:
			// Try again at the next reading rather than remove Pods blindly.
			st.deferredScaleIns++
			log.Error(err, "could not rank the pods for scale-in; deferring it to the next reading",
				"from", current, "to", desired)
			r.event(&pool, &dep, corev1.EventTypeWarning, "ScaleInDeferred", "Scale",
				"Scale-in from %d to %d deferred: could not rank the pods by their workers' load (see the operator's logs)",
				current, desired)
			desired = current
		default:
			// Ranking keeps failing: scale in anyway (the ReplicaSet's own order applies; the workers' drain still
			// finishes or releases their steps), so a broken ranking never pins the pool at its peak.
			st.deferredScaleIns = 0
			log.Error(err, "could not rank the pods for scale-in; scaling in without ranking", "from", current,
				"to", desired)
			r.event(&pool, &dep, corev1.EventTypeWarning, "ScaleInUnranked", "Scale",
				"Scaling in from %d to %d without ranking the pods by their workers' load after %d failed attempts",
				current, desired, maxDeferredScaleIns+1)
		}
	}

	want, hash := desiredDeployment(&pool, pd.conn, r.databaseQueues(&pool, st), desired)
	var werr error
	switch {
	case !exists:
		if werr = controllerutil.SetControllerReference(&pool, want, r.Scheme); werr == nil {
			werr = r.Create(ctx, want)
		}
		dep = *want
	case dep.Annotations[AnnotationTemplateHash] != hash || current != desired:
		applyTo(&dep, want)
		werr = r.Update(ctx, &dep)
	}
	if werr != nil {
		// Read again next time rather than lose this reading's decision.
		st.lastPoll = time.Time{}
		if apierrors.IsConflict(werr) || apierrors.IsAlreadyExists(werr) {
			return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil // stale cache: try again shortly
		}
		setPoolCondition(&pool, taskerv1alpha1.WorkerPoolConditionReady, metav1.ConditionFalse, reasonDeploymentFailed,
			fmt.Sprintf("could not write Deployment %q: %s", want.Name, apiErrorMessage(werr)))
		if err := r.writeStatus(ctx, orig, &pool); err != nil {
			log.Error(err, "could not write status")
		}
		return ctrl.Result{}, werr
	}
	if desired != current {
		st.history.Scaled(now, current, desired)
		pool.Status.LastScaleTime = ptr.To(metav1.NewTime(now))
		r.event(&pool, &dep, corev1.EventTypeNormal, "Scaled", "Scale", "Scaled from %d to %d replicas: %s", current, desired,
			st.last.decision.Explain(spec))
		log.Info("scaled", "from", current, "to", desired, "reason", st.last.decision.Reason)
	}

	r.setStatus(&pool, &dep, st, spec, desired)
	setPoolGauges(&pool, spec)
	if err := r.writeStatus(ctx, orig, &pool); err != nil {
		return ctrl.Result{}, err
	}
	next := st.lastPoll.Add(interval).Sub(r.now())
	if next <= 0 || next > interval {
		next = interval
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// read takes one backlog reading and decides. Database errors are logged here and summarised for the status.
func (r *WorkerPoolReconciler) read(ctx context.Context, pool *taskerv1alpha1.WorkerPool, reader PoolMetrics, dbErr error,
	st *poolState, spec scaling.Spec, now time.Time, current int32) reading {
	log := logf.FromContext(ctx)
	var rd reading
	var err error
	switch {
	case dbErr != nil:
		rd.failReason = reasonDatabaseNotConfigured
		rd.failMessage = "the backlog cannot be read: " + dbErr.Error()
	case reader == nil:
		rd.failReason = reasonDatabaseNotConfigured
		rd.failMessage = "the operator has no database connection configured, so the backlog cannot be read"
	default:
		qctx, cancel := context.WithTimeout(ctx, r.queryTimeout())
		var legacy []string
		if legacy, err = reader.LegacyQueues(qctx, pool.Namespace, r.legacyCandidates(pool)); err == nil {
			st.legacy = legacy
			rd.backlog, err = reader.Backlog(qctx, r.databaseQueues(pool, st))
		}
		cancel()
		if err != nil {
			rd.failReason = reasonDatabaseUnavailable
			rd.failMessage = fmt.Sprintf("could not read the backlog of queue(s) %s from PostgreSQL (see the "+
				"operator's logs)", strings.Join(pool.Spec.Queues, ", "))
		}
	}
	ok := rd.failReason == ""
	rd.decision = st.history.Next(spec, now, current, rd.backlog.Total, ok)
	if ok {
		backlogGauge.WithLabelValues(pool.Namespace, pool.Name).Set(float64(rd.backlog.Total))
		return rd
	}
	rd.failMessage += "; " + rd.decision.Explain(spec)
	if err != nil {
		// The first failure in a row is an error; the following ones only repeat it.
		if st.history.Failures() == 1 {
			log.Error(err, "could not read the backlog", "queues", pool.Spec.Queues)
		} else {
			log.V(1).Info("could not read the backlog", "queues", pool.Spec.Queues, "failures",
				st.history.Failures(), "error", err.Error())
		}
	}
	if st.history.Failures() == 1 {
		r.event(pool, nil, corev1.EventTypeWarning, reasonMetricsUnavailable, "ReadBacklog", "%s", rd.failMessage)
	}
	return rd
}

// setStatus fills the pool's status from the Deployment and the last reading.
func (r *WorkerPoolReconciler) setStatus(pool *taskerv1alpha1.WorkerPool, dep *appsv1.Deployment, st *poolState,
	spec scaling.Spec, desired int32) {
	s := &pool.Status
	s.ObservedGeneration = pool.Generation
	s.DatabaseQueues = r.databaseQueues(pool, st)
	s.DesiredReplicas = desired
	s.CurrentReplicas = dep.Status.Replicas
	s.ReadyReplicas = dep.Status.ReadyReplicas
	if la := st.history.LastActive(); !la.IsZero() {
		s.LastActiveTime = ptr.To(metav1.NewTime(la))
	}
	if s.LastScaleTime != nil {
		s.LastScaleTime = ptr.To(s.LastScaleTime.Rfc3339Copy())
	}
	if s.LastActiveTime != nil {
		s.LastActiveTime = ptr.To(s.LastActiveTime.Rfc3339Copy())
	}

	setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionReady, metav1.ConditionTrue, reasonDeploymentReconciled,
		fmt.Sprintf("Deployment %q has the pool's template and %d desired replicas", dep.Name, desired))

	last := st.last
	d := last.decision
	if last.failReason != "" {
		setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionMetricsAvailable, metav1.ConditionFalse,
			last.failReason, last.failMessage)
		setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionActive, metav1.ConditionUnknown,
			reasonMetricsUnavailable, "the backlog is unknown")
	} else {
		s.Backlog = last.backlog.Total
		msg := fmt.Sprintf("read the backlog of queue(s) %s", strings.Join(pool.Spec.Queues, ", "))
		if len(st.legacy) > 0 {
			msg += fmt.Sprintf("; draining queue(s) %s, admitted before queues were namespaced", strings.Join(st.legacy, ", "))
		}
		if len(last.backlog.Missing) > 0 {
			msg += fmt.Sprintf("; queue(s) %s do not exist yet and count as empty", strings.Join(last.backlog.Missing, ", "))
		}
		setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionMetricsAvailable, metav1.ConditionTrue, reasonBacklogRead, msg)
		if d.Active {
			setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionActive, metav1.ConditionTrue, reasonActive,
				fmt.Sprintf("backlog %d in the pool's queues", d.Backlog))
		} else {
			setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionActive, metav1.ConditionFalse, reasonIdle,
				d.Explain(spec))
		}
	}
	if d.Limit != scaling.LimitNone {
		setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionScalingLimited, metav1.ConditionTrue, string(d.Limit),
			d.Explain(spec))
	} else {
		setPoolCondition(pool, taskerv1alpha1.WorkerPoolConditionScalingLimited, metav1.ConditionFalse, reasonWithinRange,
			"the desired replica count is within minReplicas, maxReplicas and the scale-up rate")
	}
}

// writeStatus patches the status when it differs from orig; an unchanged status costs no request. Each patch
// carries the counts too, changed or not: a merge patch leaves out a count that stayed 0, and a count never
// written is a blank column in `kubectl get workerpools` (an object written before the counts were always
// stored, or a pool whose ready replicas have always been 0).
func (r *WorkerPoolReconciler) writeStatus(ctx context.Context, orig, pool *taskerv1alpha1.WorkerPool) error {
	data, err := client.MergeFrom(orig).Data(pool)
	if err != nil {
		return err
	}
	if string(data) == "{}" {
		return nil
	}
	var p map[string]any
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	st, _ := p["status"].(map[string]any)
	if st == nil {
		st = map[string]any{}
		p["status"] = st
	}
	st["backlog"], st["desiredReplicas"] = pool.Status.Backlog, pool.Status.DesiredReplicas
	st["currentReplicas"], st["readyReplicas"] = pool.Status.CurrentReplicas, pool.Status.ReadyReplicas
	if data, err = json.Marshal(p); err != nil {
		return err
	}
	if err := r.Status().Patch(ctx, pool, client.RawPatch(types.MergePatchType, data)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}

func (r *WorkerPoolReconciler) event(pool *taskerv1alpha1.WorkerPool, related runtime.Object, eventtype, reason,
	action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(pool, related, eventtype, reason, action, note, args...)
}

// state returns the pool's memory, creating it (isNew) on first sight of its UID.
func (r *WorkerPoolReconciler) state(pool *taskerv1alpha1.WorkerPool) (st *poolState, isNew bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pools == nil {
		r.pools = map[types.UID]*poolState{}
	}
	if st, ok := r.pools[pool.UID]; ok {
		return st, false
	}
	// A pool recreated under the same name is a new pool: drop the old one's memory.
	key := types.NamespacedName{Namespace: pool.Namespace, Name: pool.Name}
	for uid, old := range r.pools {
		if old.key == key {
			delete(r.pools, uid)
		}
	}
	st = &poolState{key: key}
	r.pools[pool.UID] = st
	return st, true
}

// forget drops a deleted pool's memory and metric series.
func (r *WorkerPoolReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	for uid, st := range r.pools {
		if st.key == key {
			delete(r.pools, uid)
		}
	}
	r.mu.Unlock()
	deletePoolGauges(key.Namespace, key.Name)
}

// trackedPools is the number of pools the reconciler keeps memory for (tests).
func (r *WorkerPoolReconciler) trackedPools() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pools)
}

// PoolMetrics is what the WorkerPool controller reads from the database; *poolmetrics.Reader implements it.
type PoolMetrics interface {
	// Backlog is the summed queue length of queues.
	Backlog(ctx context.Context, queues []string) (poolmetrics.Backlog, error)
	// Workers returns the fresh records (younger than staleAfter) of the workers with those ids.
	Workers(ctx context.Context, ids []string, staleAfter time.Duration) (map[string]poolmetrics.Worker, error)
	// LegacyQueues returns those of queues that still hold unfinished steps of namespace's unfinished tasks.
	LegacyQueues(ctx context.Context, namespace string, queues []string) ([]string, error)
}

func (r *WorkerPoolReconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}

func (r *WorkerPoolReconciler) queryTimeout() time.Duration {
	if r.QueryTimeout > 0 {
		return r.QueryTimeout
	}
	return DefaultQueryTimeout
}

func (r *WorkerPoolReconciler) workerStaleAfter() time.Duration {
	if r.WorkerStaleAfter > 0 {
		return r.WorkerStaleAfter
	}
	return DefaultWorkerStaleAfter
}

// pollSlack lets a reconcile that runs a little before the interval is over (woken by a Deployment change) take
// the reading, instead of scheduling another wake-up a few milliseconds later.
func pollSlack(interval time.Duration) time.Duration { return min(interval/10, time.Second) }

// pollingInterval is spec.scaling.pollingIntervalSeconds (API default 15 s).
func pollingInterval(s taskerv1alpha1.ScalingSpec) time.Duration {
	if s.PollingIntervalSeconds != nil && *s.PollingIntervalSeconds > 0 {
		return time.Duration(*s.PollingIntervalSeconds) * time.Second
	}
	return defaultPollingInterval
}

// scalingSpec converts the API's scaling spec; unset fields take the API defaults (the apiserver fills them in,
// but objects stored before a default existed may lack them).
func scalingSpec(s taskerv1alpha1.ScalingSpec) scaling.Spec {
	out := scaling.DefaultSpec()
	seconds := func(v int32) time.Duration { return time.Duration(v) * time.Second }
	if s.MinReplicas != nil {
		out.MinReplicas = *s.MinReplicas
	}
	if s.MaxReplicas != nil {
		out.MaxReplicas = *s.MaxReplicas
	}
	if s.TargetBacklogPerReplica != nil {
		out.TargetBacklogPerReplica = int64(*s.TargetBacklogPerReplica)
	}
	if s.ActivationBacklog != nil {
		out.ActivationBacklog = int64(*s.ActivationBacklog)
	}
	if s.CooldownSeconds != nil {
		out.Cooldown = seconds(*s.CooldownSeconds)
	}
	if s.ScaleDownStabilizationSeconds != nil {
		out.ScaleDownStabilization = seconds(*s.ScaleDownStabilizationSeconds)
	}
	if s.FallbackReplicas != nil {
		out.FallbackReplicas = ptr.To(*s.FallbackReplicas)
	}
	if s.FailureThreshold != nil {
		out.FailureThreshold = *s.FailureThreshold
	}
	return out
}

// apiErrorMessage is the apiserver's message for err (status errors are meant for users), else a generic one.
func apiErrorMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return "see the operator's logs"
}

// SetupWithManager registers the reconciler: it watches WorkerPools and the Deployments they own.
func (r *WorkerPoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("workerpool-controller")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.WorkerPool{}).
		Owns(&appsv1.Deployment{}).
		Named("workerpool").
		// Readings wait on PostgreSQL (up to QueryTimeout when it is down): a few pools at a time.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}
