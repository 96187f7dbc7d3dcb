// Package workerpool tests the WorkerPool controller end to end: a real kube-apiserver (envtest), a real
// PostgreSQL with pgmq and the tasker schema, and the operator as it ships (operator.Setup with one shared
// database). envtest runs no kube-controller-manager: no ReplicaSet controller, no kubelet, no garbage collector.
// The tests therefore watch the Deployment's spec.replicas (what the operator writes), create the worker Pods
// themselves, and check owner references rather than cascading deletion.
package workerpool

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/pgmq"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

var (
	env *testenv.Env
	// dbPool is the tests' own connection to the operator's database (sending messages, worker records),
	// independent of the operator's shared pool.
	dbPool *pgxpool.Pool
	mq     *pgmq.Client
	// watcher is a client that can watch, for recording every replica count the operator writes.
	watcher client.WithWatch
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "workerpool:", err); return 1 }
	teardown, err := pgtest.Setup(pgtest.Options{})
	if err != nil {
		return fail(err)
	}
	defer teardown()
	url, err := pgtest.CreateDatabase("workerpool")
	if err != nil {
		return fail(err)
	}
	db, err := operator.NewDatabase(url, store.Options{MaxConns: 8}, engine.Options{}, false, testenv.Logger())
	if err != nil {
		return fail(err)
	}
	env, err = testenv.Start(testenv.Options{Operator: operator.Options{Database: db}})
	if err != nil {
		return fail(err)
	}
	defer env.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for db.Ready() != nil { // the operator migrates on start: pgmq and the tasker schema
		if ctx.Err() != nil {
			return fail(fmt.Errorf("the operator's database never became ready"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dbPool, err = store.Open(ctx, url, store.Options{MaxConns: 4}); err != nil {
		return fail(err)
	}
	defer dbPool.Close()
	mq = pgmq.New(dbPool)
	if watcher, err = client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()}); err != nil {
		return fail(err)
	}
	return m.Run()
}

// ---- helpers ----

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace gives a test its own namespace. (envtest has no namespace controller: deleting one would not
// delete its objects, so tests delete their pools themselves.)
func newNamespace(t *testing.T) string { return env.NewNamespace(t, "wp") }

var queueCounter atomic.Int64

// newQueue names a queue unique to this binary run and creates namespace ns's database queue of that name.
func newQueue(t *testing.T, ns, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("wp_%s_%d_%d", prefix, os.Getpid()%100000, queueCounter.Add(1))
	if err := mq.CreateQueue(ctxFor(t, 30*time.Second), queuescope.Namespaced(ns, name)); err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	return name
}

// send puts n messages into namespace ns's queue.
func send(t *testing.T, ns, queue string, n int) {
	t.Helper()
	msgs := make([]json.RawMessage, n)
	for i := range msgs {
		msgs[i] = json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))
	}
	if _, err := mq.SendBatch(ctxFor(t, 30*time.Second), queuescope.Namespaced(ns, queue), msgs, 0); err != nil {
		t.Fatalf("send %d messages to %s: %v", n, queue, err)
	}
}

// purge empties namespace ns's queue.
func purge(t *testing.T, ns, queue string) {
	t.Helper()
	if _, err := mq.PurgeQueue(ctxFor(t, 30*time.Second), queuescope.Namespaced(ns, queue)); err != nil {
		t.Fatalf("purge %s: %v", queue, err)
	}
}

type scalingOpts struct {
	min, max, target, window, cooldown int32
	fallback, failureThreshold         *int32
}

// newPool creates a WorkerPool polling every second, and deletes it when the test ends.
func newPool(t *testing.T, ns, name string, queues []string, s scalingOpts, mutate ...func(*taskerv1alpha1.WorkerPool)) *taskerv1alpha1.WorkerPool {
	t.Helper()
	p := &taskerv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: taskerv1alpha1.WorkerPoolSpec{
			Queues:   queues,
			Database: &taskerv1alpha1.DatabaseSecretRef{SecretName: "tasker-db"},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "worker", Image: "worker:dev"}},
			}},
			Scaling: taskerv1alpha1.ScalingSpec{
				MinReplicas:                   &s.min,
				MaxReplicas:                   &s.max,
				TargetBacklogPerReplica:       &s.target,
				PollingIntervalSeconds:        ptr.To(int32(1)),
				ScaleDownStabilizationSeconds: &s.window,
				CooldownSeconds:               &s.cooldown,
				FallbackReplicas:              s.fallback,
				FailureThreshold:              s.failureThreshold,
			},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatalf("create pool %s: %v", name, err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	return p
}

var waitFor = testenv.WaitFor

func getPool(t *testing.T, ns, name string) *taskerv1alpha1.WorkerPool {
	t.Helper()
	var p taskerv1alpha1.WorkerPool
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		t.Fatalf("get pool %s/%s: %v", ns, name, err)
	}
	return &p
}

func getDeployment(ns, name string) (*appsv1.Deployment, error) {
	var d appsv1.Deployment
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d)
	return &d, err
}

// replicas is the Deployment's spec.replicas, or -1 when there is no Deployment.
func replicas(t *testing.T, ns, name string) int32 {
	t.Helper()
	d, err := getDeployment(ns, name)
	if apierrors.IsNotFound(err) {
		return -1
	}
	if err != nil {
		t.Fatalf("get deployment: %v", err)
	}
	return *d.Spec.Replicas
}

func waitReplicas(t *testing.T, ns, name string, want int32, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("deployment %s at %d replicas", name, want), func() (bool, error) {
		got := replicas(t, ns, name)
		return got == want, fmt.Errorf("replicas %d", got)
	})
}

// condition returns the pool's condition of type typ (zero value when absent).
func condition(p *taskerv1alpha1.WorkerPool, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(p.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func waitCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string, d time.Duration) *taskerv1alpha1.WorkerPool {
	t.Helper()
	var p *taskerv1alpha1.WorkerPool
	waitFor(t, d, fmt.Sprintf("pool %s condition %s=%s (%s)", name, typ, status, reason), func() (bool, error) {
		p = getPool(t, ns, name)
		c := condition(p, typ)
		return c.Status == status && (reason == "" || c.Reason == reason), fmt.Errorf("%+v", c)
	})
	return p
}

// checkConditionsCurrent checks that every condition describes the pool's current generation.
func checkConditionsCurrent(t *testing.T, p *taskerv1alpha1.WorkerPool) {
	t.Helper()
	for _, typ := range []string{taskerv1alpha1.WorkerPoolConditionReady, taskerv1alpha1.WorkerPoolConditionActive,
		taskerv1alpha1.WorkerPoolConditionScalingLimited, taskerv1alpha1.WorkerPoolConditionMetricsAvailable} {
		c := meta.FindStatusCondition(p.Status.Conditions, typ)
		if c == nil {
			t.Errorf("pool %s has no %s condition", p.Name, typ)
			continue
		}
		if c.ObservedGeneration != p.Generation {
			t.Errorf("pool %s condition %s has observedGeneration %d, generation is %d", p.Name, typ,
				c.ObservedGeneration, p.Generation)
		}
	}
}

// replicaLog records every spec.replicas value the Deployments of a namespace take, from a watch, with the time
// each change arrived.
type replicaLog struct {
	mu  sync.Mutex
	seq map[string][]replicaChange // distinct consecutive values per Deployment
}

type replicaChange struct {
	replicas int32
	seen     time.Time
}

func watchReplicas(t *testing.T, ns string) *replicaLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := watcher.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		t.Fatalf("watch deployments: %v", err)
	}
	l := &replicaLog{seq: map[string][]replicaChange{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) || d.Spec.Replicas == nil {
				continue
			}
			l.mu.Lock()
			s := l.seq[d.Name]
			if len(s) == 0 || s[len(s)-1].replicas != *d.Spec.Replicas {
				l.seq[d.Name] = append(s, replicaChange{replicas: *d.Spec.Replicas, seen: time.Now()})
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); cancel(); <-done })
	return l
}

func (l *replicaLog) values(name string) []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int32, len(l.seq[name]))
	for i, c := range l.seq[name] {
		out[i] = c.replicas
	}
	return out
}

// seen is when the Deployment last changed to replicas (zero if never).
func (l *replicaLog) seen(name string, replicas int32) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var at time.Time
	for _, c := range l.seq[name] {
		if c.replicas == replicas {
			at = c.seen
		}
	}
	return at
}

// events returns the notes of the pool's events with the given reason.
func events(t *testing.T, ns, pool, reason string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "WorkerPool" && e.Regarding.Name == pool && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

func waitEvent(t *testing.T, ns, pool, reason, contains string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("event %s %q of pool %s", reason, contains, pool), func() (bool, error) {
		notes := events(t, ns, pool, reason)
		for _, n := range notes {
			if strings.Contains(n, contains) {
				return true, nil
			}
		}
		return false, fmt.Errorf("events: %q", notes)
	})
}

// gauge reads a per-pool gauge from controller-runtime's registry (the operator runs in this process); ok is
// false when the series does not exist.
func gauge(t *testing.T, name, ns, pool string) (float64, bool) {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelsMatch(m, ns, pool) {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsMatch(m *dto.Metric, ns, pool string) bool {
	var okNS, okPool bool
	for _, l := range m.GetLabel() {
		okNS = okNS || (l.GetName() == "pool_namespace" && l.GetValue() == ns)
		okPool = okPool || (l.GetName() == "pool" && l.GetValue() == pool)
	}
	return okNS && okPool
}
