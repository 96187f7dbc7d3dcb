package controllers

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// A pool without spec.database gets its database's Secret (roleMode Shared), copied into its namespace; a changed
// Secret is copied again and rolls the workers; a database that shares none (PerPool, --database-url) leaves the
// pool not Ready with the reason.
func TestPoolGetsItsDatabaseSecret(t *testing.T) {
	pool := testPool()
	pool.Spec.Database = nil
	src := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "tasker-system", Name: "pg-east"},
		Data: map[string][]byte{"url": []byte("postgres://east/tasker")}}
	r, c, _ := fakeReconciler(t, pool, src)
	ref := taskerv1alpha1.NamespacedSecretKeyRef{Namespace: "tasker-system", Name: "pg-east", Key: "url"}
	r.Databases = SingleDatabase{Name: "east", WorkerSecret: &ref}
	ctx := context.Background()
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "wp"}}
	reconcile := func() (appsv1.Deployment, corev1.Secret, taskerv1alpha1.WorkerPool) {
		t.Helper()
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
		var dep appsv1.Deployment
		var copied corev1.Secret
		var got taskerv1alpha1.WorkerPool
		_ = c.Get(ctx, req.NamespacedName, &dep)
		_ = c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: SharedSecretName("wp")}, &copied)
		if err := c.Get(ctx, req.NamespacedName, &got); err != nil {
			t.Fatal(err)
		}
		return dep, copied, got
	}

	dep, copied, got := reconcile()
	if string(copied.Data["url"]) != "postgres://east/tasker" || !metav1.IsControlledBy(&copied, pool) {
		t.Fatalf("copied Secret %+v", copied)
	}
	env := dep.Spec.Template.Spec.Containers[0].Env
	var ref0 *corev1.SecretKeySelector
	for _, e := range env {
		if e.Name == EnvDatabaseURL {
			ref0 = e.ValueFrom.SecretKeyRef
		}
	}
	if ref0 == nil || ref0.Name != "wp-database" || ref0.Key != "url" {
		t.Errorf("TASKER_DATABASE_URL from %+v, want wp-database/url", ref0)
	}
	ann := dep.Spec.Template.Annotations
	if ann[AnnotationDatabase] != "east" || ann[AnnotationDatabaseSecretHash] == "" || got.Status.Database != "east" {
		t.Errorf("pod annotations %v, status.database %q", ann, got.Status.Database)
	}

	// The password is rotated: the copy follows and the Pods roll (their template changes).
	src.Data["url"] = []byte("postgres://east/tasker?password=new")
	if err := c.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	before := ann[AnnotationDatabaseSecretHash]
	dep, copied, _ = reconcile()
	if string(copied.Data["url"]) != "postgres://east/tasker?password=new" ||
		dep.Spec.Template.Annotations[AnnotationDatabaseSecretHash] == before {
		t.Errorf("after rotation: copy %q, hash %q (was %q)", copied.Data["url"], dep.Spec.Template.Annotations[AnnotationDatabaseSecretHash], before)
	}

	// PerPool: nothing to give the workers.
	r.Databases = SingleDatabase{Name: "east"}
	_, _, got = reconcile()
	cond := meta.FindStatusCondition(got.Status.Conditions, taskerv1alpha1.WorkerPoolConditionReady)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reasonDatabaseSecret ||
		!strings.Contains(cond.Message, "spec.database is required") {
		t.Errorf("Ready = %+v", cond)
	}
}
