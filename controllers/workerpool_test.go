package controllers

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/poolmetrics"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/scaling"
)

func testPool() *taskerv1alpha1.WorkerPool {
	return &taskerv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "wp", UID: "uid-1", Generation: 3},
		Spec: taskerv1alpha1.WorkerPoolSpec{
			Queues:   []string{"a", "b"},
			Database: &taskerv1alpha1.DatabaseSecretRef{SecretName: "pg"},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x", LabelWorkerPool: "spoofed"}},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "init", Image: "i"}},
					Containers: []corev1.Container{
						{Name: "worker", Image: "w", Env: []corev1.EnvVar{
							{Name: "OWN", Value: "$(TASKER_SLOTS)"}, {Name: EnvSlots, Value: "999"},
						}},
						{Name: "sidecar", Image: "s"},
					},
				},
			},
		},
	}
}

func TestDesiredDeployment(t *testing.T) {
	pool := testPool()
	dep, hash := desiredDeployment(pool, workerConnection{Secret: *pool.Spec.Database}, pool.Spec.Queues, 3)
	if dep.Name != "wp" || dep.Namespace != "ns" || *dep.Spec.Replicas != 3 {
		t.Fatalf("deployment %s/%s replicas %d", dep.Namespace, dep.Name, *dep.Spec.Replicas)
	}
	if sel := dep.Spec.Selector.MatchLabels; len(sel) != 1 || sel[LabelWorkerPool] != "wp" {
		t.Errorf("selector %v", sel)
	}
	if l := dep.Spec.Template.Labels; l[LabelWorkerPool] != "wp" || l["app"] != "x" {
		t.Errorf("template labels %v: want the pool label over the template's, and the template's own", l)
	}
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 60 {
		t.Errorf("default grace period %v, want 60", g)
	}
	if dep.Annotations[AnnotationTemplateHash] != hash || hash == "" {
		t.Errorf("hash annotation %q, hash %q", dep.Annotations[AnnotationTemplateHash], hash)
	}
	for _, c := range append(dep.Spec.Template.Spec.InitContainers, dep.Spec.Template.Spec.Containers...) {
		names := make([]string, len(c.Env))
		for i, e := range c.Env {
			names[i] = e.Name
		}
		want := []string{EnvQueues, EnvSlots, EnvDatabaseURL, EnvPodNamespace, EnvPodName, EnvWorkerID, EnvDrainTimeout}
		if c.Name == "worker" {
			want = append(want, "OWN") // the template's TASKER_SLOTS is dropped, its OWN kept after ours
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("container %s env %v, want %v", c.Name, names, want)
		}
		if c.Env[0].Value != "a,b" || c.Env[1].Value != "4" {
			t.Errorf("container %s: queues %q slots %q", c.Name, c.Env[0].Value, c.Env[1].Value)
		}
		if ref := c.Env[2].ValueFrom.SecretKeyRef; ref.Name != "pg" || ref.Key != "url" {
			t.Errorf("container %s: database secret ref %+v, want pg/url (default key)", c.Name, ref)
		}
		// The worker id is the Pod's namespace and name (ids of two namespaces' Pods never collide), composed from
		// the two variables before it.
		if id := c.Env[5]; id.Value != "$(POD_NAMESPACE)/$(TASKER_POD_NAME)" || c.Env[3].ValueFrom.FieldRef.FieldPath != "metadata.namespace" ||
			c.Env[4].ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Errorf("container %s: worker id %+v from %+v and %+v", c.Name, id, c.Env[3], c.Env[4])
		}
	}
	// The pool's template itself is not modified.
	if len(pool.Spec.Template.Spec.Containers[1].Env) != 0 || pool.Spec.Template.Labels[LabelWorkerPool] != "spoofed" {
		t.Errorf("desiredDeployment modified the pool's template")
	}

	// Replicas are not part of the hash; the template and the injected configuration are.
	if _, h := desiredDeployment(pool, workerConnection{Secret: *pool.Spec.Database}, pool.Spec.Queues, 7); h != hash {
		t.Errorf("hash changed with replicas")
	}
	for name, mut := range map[string]func(*taskerv1alpha1.WorkerPool){
		"image":  func(p *taskerv1alpha1.WorkerPool) { p.Spec.Template.Spec.Containers[0].Image = "w2" },
		"queues": func(p *taskerv1alpha1.WorkerPool) { p.Spec.Queues = []string{"a"} },
		"slots":  func(p *taskerv1alpha1.WorkerPool) { p.Spec.Slots = 9 },
		"grace":  func(p *taskerv1alpha1.WorkerPool) { p.Spec.TerminationGracePeriodSeconds = 5 },
		"secret": func(p *taskerv1alpha1.WorkerPool) { p.Spec.Database.Key = "dsn" },
	} {
		p := testPool()
		mut(p)
		if _, h := desiredDeployment(p, workerConnection{Secret: *p.Spec.Database}, p.Spec.Queues, 3); h == hash {
			t.Errorf("hash unchanged after a change of %s", name)
		}
	}
}

func TestApplyToKeepsWhatTheOperatorDoesNotOwn(t *testing.T) {
	want, _ := desiredDeployment(testPool(), workerConnection{Secret: *testPool().Spec.Database}, testPool().Spec.Queues, 2)
	live := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"team": "x"}, Annotations: map[string]string{"note": "y"}},
		Spec: appsv1.DeploymentSpec{
			Replicas:             ptr.To(int32(5)),
			RevisionHistoryLimit: ptr.To(int32(10)),
			Selector:             want.Spec.Selector,
		},
	}
	applyTo(live, want)
	if *live.Spec.Replicas != 2 || *live.Spec.RevisionHistoryLimit != 10 || live.Labels["team"] != "x" ||
		live.Annotations["note"] != "y" || live.Labels[LabelWorkerPool] != "wp" ||
		live.Annotations[AnnotationTemplateHash] != want.Annotations[AnnotationTemplateHash] {
		t.Errorf("applyTo: %+v", live)
	}
}

func TestDeletionCost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		w     poolmetrics.Worker
		found bool
		want  int
	}{
		{"no record", poolmetrics.Worker{}, false, costUnknown},
		{"stale record", poolmetrics.Worker{InFlight: 5}, true, costUnknown},
		{"idle", poolmetrics.Worker{Fresh: true}, true, 0},
		{"busy", poolmetrics.Worker{Fresh: true, InFlight: 3}, true, 3},
		{"negative in_flight", poolmetrics.Worker{Fresh: true, InFlight: -2}, true, 0},
	} {
		if got := deletionCost(tc.w, tc.found); got != tc.want {
			t.Errorf("%s: cost %d, want %d", tc.name, got, tc.want)
		}
	}
	if !(deletionCost(poolmetrics.Worker{Fresh: true, InFlight: 1}, true) > deletionCost(poolmetrics.Worker{Fresh: true}, true)) {
		t.Error("busy does not cost more than idle")
	}
}

func TestScalingSpecFromAPI(t *testing.T) {
	if got := scalingSpec(taskerv1alpha1.ScalingSpec{}); got.MaxReplicas != scaling.DefaultMaxReplicas ||
		got.Cooldown != scaling.DefaultCooldown || got.FallbackReplicas != nil {
		t.Errorf("defaults: %+v", got)
	}
	got := scalingSpec(taskerv1alpha1.ScalingSpec{
		MinReplicas: ptr.To(int32(1)), MaxReplicas: ptr.To(int32(7)), TargetBacklogPerReplica: ptr.To(int32(20)),
		ActivationBacklog: ptr.To(int32(3)), CooldownSeconds: ptr.To(int32(0)), ScaleDownStabilizationSeconds: ptr.To(int32(2)),
		FallbackReplicas: ptr.To(int32(2)), FailureThreshold: ptr.To(int32(5)),
	})
	if got.MinReplicas != 1 || got.MaxReplicas != 7 || got.TargetBacklogPerReplica != 20 || got.ActivationBacklog != 3 ||
		got.Cooldown != 0 || got.ScaleDownStabilization != 2*time.Second || *got.FallbackReplicas != 2 ||
		got.FailureThreshold != 5 || got.ScaleUp != scaling.DefaultScaleUp {
		t.Errorf("converted: %+v", got)
	}
	if d := pollingInterval(taskerv1alpha1.ScalingSpec{}); d != 15*time.Second {
		t.Errorf("default polling interval %s", d)
	}
}

func TestStateIsPerUIDAndForgotten(t *testing.T) {
	r := &WorkerPoolReconciler{}
	p := testPool()
	st, isNew := r.state(p)
	if !isNew {
		t.Fatal("first sight is not new")
	}
	if again, isNew := r.state(p); isNew || again != st {
		t.Fatal("second sight made a new state")
	}
	// Recreated under the same name: a new UID, a new memory, the old one dropped.
	p2 := testPool()
	p2.UID = "uid-2"
	if _, isNew := r.state(p2); !isNew || r.trackedPools() != 1 {
		t.Fatalf("recreated pool: new %v, tracked %d", isNew, r.trackedPools())
	}
	for _, g := range poolGauges {
		g.WithLabelValues("ns", "wp").Set(2)
	}
	r.forget(types.NamespacedName{Namespace: "ns", Name: "wp"})
	if r.trackedPools() != 0 {
		t.Errorf("%d pools tracked after forget", r.trackedPools())
	}
	for _, g := range poolGauges {
		if n := testutil.CollectAndCount(g); n != 0 {
			t.Errorf("%d series of %s after forget", n, gaugeName(t, g))
		}
	}
}

// gaugeName is the name of the metric g exports.
func gaugeName(t *testing.T, g *prometheus.GaugeVec) string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 1)
	g.Describe(ch)
	return (<-ch).String()
}

// The pool's gauges follow its status: desired, current and ready replicas, and the (defaulted) maxReplicas.
func TestReconcileExportsPoolGauges(t *testing.T) {
	pool := testPool()
	pool.Spec.Scaling = taskerv1alpha1.ScalingSpec{MinReplicas: ptr.To(int32(0)), MaxReplicas: ptr.To(int32(4)),
		TargetBacklogPerReplica: ptr.To(int32(10))}
	r, c, _ := scalingReconciler(t, &fakeMetrics{total: 25}, pool)
	t.Cleanup(func() { deletePoolGauges("ns", "wp") })
	reconcilePool(t, r)
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "ns", Name: "wp"}
	var dep appsv1.Deployment
	if err := c.Get(ctx, key, &dep); err != nil {
		t.Fatal(err)
	}
	dep.Status.Replicas, dep.Status.ReadyReplicas = 3, 2
	if err := c.Status().Update(ctx, &dep); err != nil {
		t.Fatal(err)
	}
	reconcilePool(t, r)
	want := map[*prometheus.GaugeVec]float64{backlogGauge: 25, desiredReplicasGauge: 3, replicasGauge: 3,
		readyReplicasGauge: 2, maxReplicasGauge: 4}
	for g, v := range want {
		if got := testutil.ToFloat64(g.WithLabelValues("ns", "wp")); got != v {
			t.Errorf("%s = %v, want %v", gaugeName(t, g), got, v)
		}
	}
}

func fakeReconciler(t *testing.T, objs ...client.Object) (*WorkerPoolReconciler, client.Client, *events.FakeRecorder) {
	t.Helper()
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&taskerv1alpha1.WorkerPool{}).
		WithObjects(objs...).Build()
	rec := events.NewFakeRecorder(20)
	return &WorkerPoolReconciler{Client: c, Scheme: s, APIReader: c, Recorder: rec}, c, rec
}

// Without a database the pool is still deployed (at minReplicas), keeps its count, and says why.
func TestReconcileWithoutDatabase(t *testing.T) {
	pool := testPool()
	pool.Spec.Scaling.MinReplicas = ptr.To(int32(2))
	r, c, rec := fakeReconciler(t, pool)
	ctx := context.Background()
	res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "wp"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > 15*time.Second {
		t.Errorf("RequeueAfter %s, want the polling interval", res.RequeueAfter)
	}
	var dep appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "wp"}, &dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 2 || !metav1.IsControlledBy(&dep, pool) {
		t.Errorf("deployment replicas %d, owners %+v", *dep.Spec.Replicas, dep.OwnerReferences)
	}
	var got taskerv1alpha1.WorkerPool
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "wp"}, &got); err != nil {
		t.Fatal(err)
	}
	m := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.WorkerPoolConditionMetricsAvailable)
	if m == nil || m.Status != metav1.ConditionFalse || m.Reason != reasonDatabaseNotConfigured || m.ObservedGeneration != 3 {
		t.Errorf("MetricsAvailable = %+v", m)
	}
	if got.Status.DesiredReplicas != 2 || got.Status.ObservedGeneration != 3 {
		t.Errorf("status %+v", got.Status)
	}
	if len(rec.Events) == 0 {
		t.Errorf("no events")
	}
	// A second reconcile right away neither polls nor writes anything.
	rv := got.ResourceVersion
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "wp"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "wp"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != rv {
		t.Errorf("an unchanged status was written again")
	}
}

// A Deployment of the same name that the pool does not control is left alone.
func TestReconcileDeploymentConflict(t *testing.T) {
	pool := testPool()
	foreign := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "wp"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(9)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
		},
	}
	r, c, _ := fakeReconciler(t, pool, foreign)
	ctx := context.Background()
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "wp"}}); err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "wp"}, &dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 9 || len(dep.OwnerReferences) != 0 {
		t.Errorf("foreign deployment modified: %+v", dep.Spec)
	}
	var got taskerv1alpha1.WorkerPool
	if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "wp"}, &got); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.WorkerPoolConditionReady); cond == nil ||
		cond.Status != metav1.ConditionFalse || cond.Reason != reasonDeploymentConflict {
		t.Errorf("Ready = %+v", cond)
	}
}

func TestDrainSeconds(t *testing.T) {
	for grace, want := range map[int64]int64{60: 55, 30: 25, 10: 8, 5: 4, 2: 1, 1: 1} {
		if got := drainSeconds(grace); got != want {
			t.Errorf("drainSeconds(%d) = %d, want %d", grace, got, want)
		}
	}
}

// fakeMetrics answers backlog readings with a fixed total or error.
type fakeMetrics struct {
	total   int64
	err     error
	queues  [][]string
	workers map[string]poolmetrics.Worker
	// legacy answers LegacyQueues (filtered by the queues asked about); legacyAsked records the questions.
	legacy      []string
	legacyAsked []string
}

func (f *fakeMetrics) LegacyQueues(_ context.Context, namespace string, queues []string) ([]string, error) {
	f.legacyAsked = append(f.legacyAsked, namespace+":"+strings.Join(queues, ","))
	var out []string
	for _, q := range f.legacy {
		if slices.Contains(queues, q) {
			out = append(out, q)
		}
	}
	return out, f.err
}

func (f *fakeMetrics) Backlog(_ context.Context, queues []string) (poolmetrics.Backlog, error) {
	f.queues = append(f.queues, queues)
	if f.err != nil {
		return poolmetrics.Backlog{}, f.err
	}
	return poolmetrics.Backlog{Total: f.total, PerQueue: map[string]int64{queues[0]: f.total}}, nil
}

func (f *fakeMetrics) Workers(context.Context, []string, time.Duration) (map[string]poolmetrics.Worker, error) {
	return f.workers, f.err
}

// scalingReconciler is fakeReconciler reading m, on a fake clock.
func scalingReconciler(t *testing.T, m *fakeMetrics, objs ...client.Object) (*WorkerPoolReconciler, client.Client,
	*clocktesting.FakePassiveClock) {
	t.Helper()
	r, c, _ := fakeReconciler(t, objs...)
	r.Databases = SingleDatabase{Name: taskerv1alpha1.DefaultDatabaseName, Metrics: m}
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	r.Clock = clk
	return r, c, clk
}

// reconcilePool reconciles the pool ns/wp.
func reconcilePool(t *testing.T, r *WorkerPoolReconciler) {
	t.Helper()
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "wp"}}); err != nil {
		t.Fatal(err)
	}
}

// With a reading, the pool scales to the backlog (within its limits) and says so; a failed reading keeps the
// replicas and reports the database as unavailable without its raw error.
func TestReconcileScalesToTheBacklog(t *testing.T) {
	pool := testPool()
	pool.Spec.Scaling = taskerv1alpha1.ScalingSpec{MinReplicas: ptr.To(int32(0)), MaxReplicas: ptr.To(int32(3)),
		TargetBacklogPerReplica: ptr.To(int32(10))}
	m := &fakeMetrics{total: 500}
	r, c, clk := scalingReconciler(t, m, pool)
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "ns", Name: "wp"}
	reconcilePool(t, r)
	if want := [][]string{{queuescope.Namespaced("ns", "a"), queuescope.Namespaced("ns", "b")}}; !reflect.DeepEqual(m.queues, want) {
		t.Errorf("backlog read for queues %v, want %v (the namespace's own)", m.queues, want)
	}
	var dep appsv1.Deployment
	if err := c.Get(ctx, key, &dep); err != nil {
		t.Fatal(err)
	}
	var got taskerv1alpha1.WorkerPool
	if err := c.Get(ctx, key, &got); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 3 || got.Status.DesiredReplicas != 3 || got.Status.Backlog != 500 {
		t.Errorf("replicas %d, status %+v; want 3 replicas for backlog 500", *dep.Spec.Replicas, got.Status)
	}
	if cond := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.WorkerPoolConditionMetricsAvailable); cond == nil ||
		cond.Status != metav1.ConditionTrue || cond.Reason != reasonBacklogRead {
		t.Errorf("MetricsAvailable = %+v", cond)
	}

	m.err = errors.New("dial tcp 10.0.0.5:5432: connection refused")
	clk.SetTime(clk.Now().Add(time.Minute)) // past the polling interval: the next reconcile reads again
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, key, &dep); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, key, &got); err != nil {
		t.Fatal(err)
	}
	cond := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.WorkerPoolConditionMetricsAvailable)
	if *dep.Spec.Replicas != 3 || cond == nil || cond.Status != metav1.ConditionFalse ||
		cond.Reason != reasonDatabaseUnavailable || strings.Contains(cond.Message, "10.0.0.5") {
		t.Errorf("after a failed reading: replicas %d, MetricsAvailable %+v", *dep.Spec.Replicas, cond)
	}
}

// Before lowering the replicas, the pool's Pods are ranked for the ReplicaSet by their workers' records: a Pod
// without a fresh record first (-1), then idle ones (0), busy ones last (their steps in flight).
func TestReconcileMarksPodsBeforeScaleIn(t *testing.T) {
	pool := testPool()
	pool.Spec.Scaling = taskerv1alpha1.ScalingSpec{MinReplicas: ptr.To(int32(0)), MaxReplicas: ptr.To(int32(3)),
		TargetBacklogPerReplica: ptr.To(int32(10))}
	var objs []client.Object
	for _, name := range []string{"wp-busy", "wp-idle", "wp-silent"} {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns",
			Labels: map[string]string{LabelWorkerPool: "wp"}}})
	}
	m := &fakeMetrics{total: 500, workers: map[string]poolmetrics.Worker{
		"ns/wp-busy": {InFlight: 7, Fresh: true}, "ns/wp-idle": {InFlight: 0, Fresh: true}}}
	r, c, clk := scalingReconciler(t, m, append(objs, pool)...)
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "ns", Name: "wp"}
	reconcilePool(t, r)
	// The backlog is gone; after the scale-down delay the pool goes down to one replica.
	m.total = 5
	for range 30 {
		clk.SetTime(clk.Now().Add(time.Minute))
		reconcilePool(t, r)
	}
	var dep appsv1.Deployment
	if err := c.Get(ctx, key, &dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas >= 3 {
		t.Fatalf("replicas %d: the pool did not scale in", *dep.Spec.Replicas)
	}
	want := map[string]string{"wp-busy": "7", "wp-idle": "0", "wp-silent": "-1"}
	for name, cost := range want {
		var p corev1.Pod
		if err := c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		if got := p.Annotations[AnnotationPodDeletionCost]; got != cost {
			t.Errorf("pod %s: deletion cost %q, want %q", name, got, cost)
		}
	}
}

func TestAPIErrorMessage(t *testing.T) {
	status := apierrors.NewForbidden(schema.GroupResource{Resource: "deployments"}, "wp", errors.New("quota exceeded"))
	if got := apiErrorMessage(fmt.Errorf("apply: %w", status)); !strings.Contains(got, "quota exceeded") {
		t.Errorf("apiserver error: %q", got)
	}
	if got := apiErrorMessage(errors.New("dial tcp 10.0.0.5:5432")); got != "see the operator's logs" {
		t.Errorf("other error: %q (must not be shown raw)", got)
	}
	r := &WorkerPoolReconciler{}
	if r.workerStaleAfter() != DefaultWorkerStaleAfter || r.queryTimeout() != DefaultQueryTimeout {
		t.Error("defaults")
	}
	r.WorkerStaleAfter, r.QueryTimeout = time.Minute, time.Second
	if r.workerStaleAfter() != time.Minute || r.queryTimeout() != time.Second {
		t.Error("overrides")
	}
}

// A pool serves its namespace's queues, or a queue itself where it is shared with the namespace; after an upgrade
// it also drains the un-namespaced queues that still hold its namespace's steps, and stops once they are empty.
func TestReconcileServesTheNamespacesQueuesAndDrainsLegacyOnes(t *testing.T) {
	pool := testPool() // queues a and b in namespace ns
	m := &fakeMetrics{total: 5, legacy: []string{"a", "b"}}
	r, c, clk := scalingReconciler(t, m, pool)
	if err := r.Queues.Share("b=ns,other"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "ns", Name: "wp"}
	check := func(want []string) {
		t.Helper()
		var dep appsv1.Deployment
		if err := c.Get(ctx, key, &dep); err != nil {
			t.Fatal(err)
		}
		for _, ct := range dep.Spec.Template.Spec.Containers {
			if got := ct.Env[0]; got.Name != EnvQueues || got.Value != strings.Join(want, ",") {
				t.Errorf("container %s: %s=%s, want %s", ct.Name, got.Name, got.Value, strings.Join(want, ","))
			}
		}
		var got taskerv1alpha1.WorkerPool
		if err := c.Get(ctx, key, &got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Status.DatabaseQueues, want) {
			t.Errorf("status.databaseQueues %v, want %v", got.Status.DatabaseQueues, want)
		}
		if last := m.queues[len(m.queues)-1]; !slices.Equal(last, want) {
			t.Errorf("backlog read of %v, want %v", last, want)
		}
	}
	reconcilePool(t, r)
	// Only a can hold legacy steps (b is shared, so its name is the queue the pool serves anyway).
	if want := []string{"ns:a"}; !slices.Equal(m.legacyAsked, want) {
		t.Errorf("asked for legacy steps in %v, want %v", m.legacyAsked, want)
	}
	check([]string{queuescope.Namespaced("ns", "a"), "b", "a"})
	var got taskerv1alpha1.WorkerPool
	if err := c.Get(ctx, key, &got); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.WorkerPoolConditionMetricsAvailable); cond == nil ||
		!strings.Contains(cond.Message, "draining queue(s) a, admitted before queues were namespaced") {
		t.Errorf("MetricsAvailable %+v: want it to say that queue a is being drained", cond)
	}

	// Drained: the next reading drops it, and the workers are told (a new template).
	m.legacy = nil
	clk.SetTime(clk.Now().Add(time.Minute))
	reconcilePool(t, r)
	check([]string{queuescope.Namespaced("ns", "a"), "b"})
}
