package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// fakeRegistry records what the controller asked and answers with fixed probes and bindings.
type fakeRegistry struct {
	ensured   map[string]DatabaseConfig
	removed   []string
	ensureErr error
	probes    map[string]DatabaseProbe
	bindings  map[string]Binding // namespace -> binding
}

func (f *fakeRegistry) Ensure(name string, cfg DatabaseConfig) error {
	if f.ensureErr != nil {
		return f.ensureErr
	}
	f.ensured[name] = cfg
	return nil
}
func (f *fakeRegistry) Remove(name string) { f.removed = append(f.removed, name) }
func (f *fakeRegistry) Probe(name string) (DatabaseProbe, bool) {
	p, ok := f.probes[name]
	return p, ok
}
func (f *fakeRegistry) Binding(_ context.Context, ns string) (Binding, error) {
	return f.bindings[ns], nil
}

func TestTaskerDatabaseReconcile(t *testing.T) {
	td := func() *taskerv1alpha1.TaskerDatabase {
		return &taskerv1alpha1.TaskerDatabase{ObjectMeta: metav1.ObjectMeta{Name: "east", Generation: 2},
			Spec: taskerv1alpha1.TaskerDatabaseSpec{
				SecretRef:         taskerv1alpha1.NamespacedSecretKeyRef{Namespace: "sys", Name: "pg", Key: "url"},
				PoolSize:          7,
				RoleMode:          taskerv1alpha1.RoleModeShared,
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"db": "east"}},
			}}
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "sys", Name: "pg"}, Data: map[string][]byte{"url": []byte("postgres://e")}}
	nsA := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"db": "east"}}}
	nsB := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"db": "east"}}}
	up := DatabaseProbe{At: time.Now(), Up: true, SchemaVersion: 20}

	tests := []struct {
		name      string
		objs      []client.Object
		reg       fakeRegistry
		ready     metav1.ConditionStatus
		reason    string
		bound     metav1.ConditionStatus
		boundWhy  string
		namespace []string
	}{
		{name: "reachable", objs: []client.Object{secret, nsA, nsB},
			reg: fakeRegistry{probes: map[string]DatabaseProbe{"east": up},
				bindings: map[string]Binding{"a": {Database: "east", Wanted: "east"}, "b": {Database: "east", Wanted: "east"}}},
			ready: metav1.ConditionTrue, reason: DatabaseReasonReachable, bound: metav1.ConditionTrue, namespace: []string{"a", "b"}},
		{name: "secret missing", objs: []client.Object{nsA},
			reg:   fakeRegistry{bindings: map[string]Binding{"a": {Database: "east", Wanted: "east"}}},
			ready: metav1.ConditionFalse, reason: DatabaseReasonSecret, bound: metav1.ConditionTrue, namespace: []string{"a"}},
		{name: "bad connection", objs: []client.Object{secret, nsA},
			reg:   fakeRegistry{ensureErr: errors.New("the connection string is not a valid PostgreSQL URL")},
			ready: metav1.ConditionFalse, reason: DatabaseReasonInvalidURL, bound: metav1.ConditionTrue},
		{name: "down, and a move waiting", objs: []client.Object{secret, nsA, nsB},
			reg: fakeRegistry{probes: map[string]DatabaseProbe{"east": {At: time.Now(), Message: "cannot reach the database"}},
				bindings: map[string]Binding{"a": {Database: "east", Wanted: "east"}, "b": {Database: "west", Wanted: "east", Unfinished: 2}}},
			ready: metav1.ConditionFalse, reason: DatabaseReasonUnreachable, bound: metav1.ConditionFalse,
			boundWhy: "namespace b moves from database west to east when its 2 unfinished", namespace: []string{"a"}},
		{name: "two resources select a namespace", objs: []client.Object{secret, nsA},
			reg: fakeRegistry{probes: map[string]DatabaseProbe{"east": up},
				bindings: map[string]Binding{"a": {Conflict: true, Problem: "namespace a is selected by the TaskerDatabases east, west: it uses none"}}},
			ready: metav1.ConditionTrue, reason: DatabaseReasonReachable, bound: metav1.ConditionFalse, boundWhy: "selected by the TaskerDatabases east, west"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := runtime.NewScheme()
			utilruntime.Must(clientgoscheme.AddToScheme(s))
			utilruntime.Must(taskerv1alpha1.AddToScheme(s))
			c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&taskerv1alpha1.TaskerDatabase{}).
				WithObjects(append(tt.objs, td())...).Build()
			reg := tt.reg
			reg.ensured = map[string]DatabaseConfig{}
			r := &TaskerDatabaseReconciler{Client: c, Scheme: s, Registry: &reg, APIReader: c}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "east"}}); err != nil {
				t.Fatal(err)
			}
			var got taskerv1alpha1.TaskerDatabase
			if err := c.Get(context.Background(), types.NamespacedName{Name: "east"}, &got); err != nil {
				t.Fatal(err)
			}
			ready := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.DatabaseConditionReady)
			if ready == nil || ready.Status != tt.ready || ready.Reason != tt.reason || ready.ObservedGeneration != 2 {
				t.Errorf("Ready = %+v, want %s/%s", ready, tt.ready, tt.reason)
			}
			bound := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.DatabaseConditionNamespacesBound)
			if bound == nil || bound.Status != tt.bound || !strings.Contains(bound.Message, tt.boundWhy) {
				t.Errorf("NamespacesBound = %+v, want %s containing %q", bound, tt.bound, tt.boundWhy)
			}
			if strings.Join(got.Status.Namespaces, ",") != strings.Join(tt.namespace, ",") || int(got.Status.NamespaceCount) != len(tt.namespace) {
				t.Errorf("namespaces %v (%d), want %v", got.Status.Namespaces, got.Status.NamespaceCount, tt.namespace)
			}
			if tt.reason == DatabaseReasonReachable {
				cfg := reg.ensured["east"]
				if cfg.URL != "postgres://e" || cfg.PoolSize != 7 || cfg.WorkerSecret == nil || cfg.WorkerSecret.Name != "pg" {
					t.Errorf("ensured %+v", cfg)
				}
				if got.Status.SchemaVersion != 20 || got.Status.LastProbeTime == nil {
					t.Errorf("status %+v", got.Status)
				}
			}
		})
	}

	// Deleted: disconnected.
	s := runtime.NewScheme()
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	reg := &fakeRegistry{ensured: map[string]DatabaseConfig{}}
	r := &TaskerDatabaseReconciler{Client: fake.NewClientBuilder().WithScheme(s).Build(), Scheme: s, Registry: reg}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(reg.removed, ",") != "gone" {
		t.Errorf("removed %v", reg.removed)
	}
}

// A deleted TaskerDatabase stays connected while Tasks run in it, says so, and goes once they are done.
func TestTaskerDatabaseDeletionWaitsForTasks(t *testing.T) {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	now := metav1.Now()
	td := &taskerv1alpha1.TaskerDatabase{ObjectMeta: metav1.ObjectMeta{Name: "east", Generation: 1,
		DeletionTimestamp: &now, Finalizers: []string{DatabaseFinalizer}}}
	running := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "t"},
		Status: taskerv1alpha1.TaskStatus{Phase: taskerv1alpha1.TaskRunning, Database: "east", TaskID: 3}}
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&taskerv1alpha1.TaskerDatabase{}, &taskerv1alpha1.Task{}).
		WithIndex(&taskerv1alpha1.Task{}, databaseIndex, unfinishedDatabaseOf).WithObjects(td, running).Build()
	reg := &fakeRegistry{ensured: map[string]DatabaseConfig{}}
	r := &TaskerDatabaseReconciler{Client: c, Scheme: s, Registry: reg, APIReader: c}
	ctx := context.Background()
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "east"}}

	res, err := r.Reconcile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var got taskerv1alpha1.TaskerDatabase
	if err := c.Get(ctx, req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	ready := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.DatabaseConditionReady)
	if res.RequeueAfter == 0 || len(reg.removed) != 0 || ready == nil || ready.Reason != DatabaseReasonDeleting ||
		!strings.Contains(ready.Message, "1 unfinished Task(s) finish (namespaces a)") {
		t.Fatalf("while a Task runs: requeue %s, removed %v, Ready %+v", res.RequeueAfter, reg.removed, ready)
	}

	running.Status.Phase = taskerv1alpha1.TaskSucceeded
	if err := c.Status().Update(ctx, running); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, &got); !apierrors.IsNotFound(err) || strings.Join(reg.removed, ",") != "east" {
		t.Errorf("after the Task finished: get %v, removed %v; want gone and disconnected", err, reg.removed)
	}
}
