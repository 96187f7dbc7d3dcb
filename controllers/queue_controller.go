package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/conditions"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// QueueFinalizer makes deleting a Queue remove its limits from the database first.
const QueueFinalizer = "tasker.dev/queue-limits"

// Reasons of a Queue's Ready condition.
const (
	QueueReasonInForce     = "LimitsInForce"
	QueueReasonNoDatabase  = "NoDatabase"
	QueueReasonUnavailable = "DatabaseUnavailable"
	QueueReasonShared      = "SharedQueue"
	QueueReasonConflict    = "Conflict"
)

// queueStatusInterval is how often a Queue's status (running steps) is refreshed, and how soon a failed write of
// its limits is tried again.
const queueStatusInterval = 30 * time.Second

// QueueLimiter writes and reads queue limits (an *engine.Engine).
type QueueLimiter interface {
	SetQueueLimits(ctx context.Context, queue string, l engine.QueueLimits) error
	QueueLimitStates(ctx context.Context, queues []string) ([]engine.QueueLimitState, error)
}

// QueueReconciler writes each Queue's limits into the database (tasker.queue_limits), where every claim of the
// queue enforces them, and removes them when the Queue is deleted (finalizer). Two Queues of one namespace naming
// the same queue: the older one's limits apply, the other reports Conflict.
type QueueReconciler struct {
	client.Client
	Scheme *runtime.Scheme
	// Databases gives each Queue its namespace's database; nil: Queues report NoDatabase.
	Databases Databases
	// Queues maps queue names to database queues (queuescope).
	Queues queuescope.Scope
}

// +kubebuilder:rbac:groups=tasker.dev,resources=queues,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=queues/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tasker.dev,resources=queues/finalizers,verbs=update

// Reconcile puts one Queue's limits in force and reports them.
func (r *QueueReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var q taskerv1alpha1.Queue
	if err := r.Get(ctx, req.NamespacedName, &q); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	name := q.QueueName()
	dbQueue := r.Queues.DatabaseQueue(q.Namespace, name)
	shared := r.Queues.Shared(q.Namespace, name)
	winner, err := r.governing(ctx, q.Namespace, name)
	if err != nil {
		return ctrl.Result{}, err
	}
	limiter, dbErr := r.limiter(ctx, q.Namespace)

	if !q.DeletionTimestamp.IsZero() {
		if !controllerutil.ContainsFinalizer(&q, QueueFinalizer) {
			return ctrl.Result{}, nil
		}
		if !shared && (winner == nil || winner.UID == q.UID || isOlder(&q, winner)) {
			// This Queue's limits are (or may be) the ones in force: hand over to the next Queue of the same
			// queue, if any, else lift them.
			var next engine.QueueLimits
			if winner != nil && winner.UID != q.UID {
				next = queueLimits(winner)
			}
			// Without a database nothing was ever written.
			if limiter != nil {
				if err := limiter.SetQueueLimits(ctx, dbQueue, next); err != nil {
					logf.FromContext(ctx).Error(err, "remove queue limits", "queue", dbQueue)
					return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
				}
			}
		}
		controllerutil.RemoveFinalizer(&q, QueueFinalizer)
		return ctrl.Result{}, r.Update(ctx, &q)
	}
	if !controllerutil.ContainsFinalizer(&q, QueueFinalizer) {
		controllerutil.AddFinalizer(&q, QueueFinalizer)
		if err := r.Update(ctx, &q); err != nil {
			return ctrl.Result{}, err
		}
	}

	orig := q.Status.DeepCopy()
	q.Status.ObservedGeneration = q.Generation
	q.Status.DatabaseQueue = dbQueue
	gen := q.Generation
	var result ctrl.Result
	switch {
	case shared:
		conditions.False(&q.Status.Conditions, gen, taskerv1alpha1.QueueConditionReady, QueueReasonShared,
			fmt.Sprintf("queue %s is shared across namespaces (--shared-queue): its limits are the cluster "+
				"administrator's to set, with tasker.set_queue_limits", name))
	case winner != nil && winner.UID != q.UID:
		conditions.False(&q.Status.Conditions, gen, taskerv1alpha1.QueueConditionReady, QueueReasonConflict,
			fmt.Sprintf("Queue %s, created earlier, sets the limits of queue %s", winner.Name, name))
	case dbErr != nil:
		conditions.False(&q.Status.Conditions, gen, taskerv1alpha1.QueueConditionReady, QueueReasonNoDatabase, dbErr.Error())
		result.RequeueAfter = queueStatusInterval
	default:
		result.RequeueAfter = queueStatusInterval
		if err := limiter.SetQueueLimits(ctx, dbQueue, queueLimits(&q)); err != nil {
			logf.FromContext(ctx).Info("cannot write queue limits", "queue", dbQueue, "error", err.Error())
			conditions.False(&q.Status.Conditions, gen, taskerv1alpha1.QueueConditionReady, QueueReasonUnavailable,
				"the database is unreachable; the limits are written when it is back")
			result.RequeueAfter = 5 * time.Second
			break
		}
		conditions.True(&q.Status.Conditions, gen, taskerv1alpha1.QueueConditionReady, QueueReasonInForce,
			describeLimits(queueLimits(&q)))
		if states, err := limiter.QueueLimitStates(ctx, []string{dbQueue}); err == nil && len(states) == 1 {
			q.Status.Running = int32(min(states[0].Running, 1<<31-1))
		}
	}
	if !equality.Semantic.DeepEqual(orig, &q.Status) {
		if err := r.Status().Update(ctx, &q); err != nil {
			return ctrl.Result{}, err
		}
	}
	return result, nil
}

// limiter is the Queue's namespace's database (nil and why not when there is none).
func (r *QueueReconciler) limiter(ctx context.Context, namespace string) (QueueLimiter, error) {
	if r.Databases == nil {
		return nil, errors.New("the operator runs without a database")
	}
	db, err := r.Databases.ForNamespace(ctx, namespace)
	if err != nil {
		return nil, err
	}
	if db.Limits == nil {
		return nil, fmt.Errorf("database %s takes no queue limits", db.Name)
	}
	return db.Limits, nil
}

// governing is the Queue of the namespace whose limits apply to queue name: the oldest not being deleted (nil:
// none).
func (r *QueueReconciler) governing(ctx context.Context, namespace, name string) (*taskerv1alpha1.Queue, error) {
	var list taskerv1alpha1.QueueList
	if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	var live []*taskerv1alpha1.Queue
	for i := range list.Items {
		if q := &list.Items[i]; q.QueueName() == name && q.DeletionTimestamp.IsZero() {
			live = append(live, q)
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	sort.Slice(live, func(i, j int) bool { return isOlder(live[i], live[j]) })
	return live[0], nil
}

func isOlder(a, b *taskerv1alpha1.Queue) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func queueLimits(q *taskerv1alpha1.Queue) engine.QueueLimits {
	var l engine.QueueLimits
	if q.Spec.MaxRunning != nil {
		l.MaxRunning = int(*q.Spec.MaxRunning)
	}
	if r := q.Spec.Rate; r != nil {
		per := r.PerSeconds
		if per < 1 {
			per = 1
		}
		l.RateSteps, l.RatePeriod = int(r.Steps), time.Duration(per)*time.Second
	}
	return l
}

// describeLimits says what the limits allow, for the Ready condition and taskerctl.
func describeLimits(l engine.QueueLimits) string {
	s := ""
	if l.MaxRunning > 0 {
		s = "at most " + strconv.Itoa(l.MaxRunning) + " steps running"
	}
	if l.RateSteps > 0 {
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf("at most %d steps started per %s (bursts of %d)", l.RateSteps, l.RatePeriod, l.RateSteps)
	}
	if s == "" {
		return "no limits"
	}
	return s
}

// SetupWithManager registers the reconciler. A Queue's change re-reconciles the namespace's other Queues of the
// same queue (one of them may take over, or lose, the limits).
func (r *QueueReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&taskerv1alpha1.Queue{}).
		Watches(&taskerv1alpha1.Queue{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list taskerv1alpha1.QueueList
			if err := mgr.GetClient().List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
				return nil
			}
			name := o.(*taskerv1alpha1.Queue).QueueName()
			var out []reconcile.Request
			for i := range list.Items {
				if q := &list.Items[i]; q.Name != o.GetName() && q.QueueName() == name {
					out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(q)})
				}
			}
			return out
		})).
		Named("queue").
		Complete(r)
}
