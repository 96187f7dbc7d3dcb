package tasks

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// Two namespaces with the same queue name and the same WorkerPool: each namespace's Tasks feed its own database
// queue, each pool reads the backlog of, and tells its workers to serve, its own namespace's queue only, so the
// workers of one namespace never run the other's steps. Namespace A's objects are made by a user who may edit
// Tasks and WorkerPools there and nowhere else (real RBAC, impersonated): naming B's queue reaches A's own.
func TestNamespacesHaveTheirOwnQueues(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	nsA, nsB := newNamespace(t), newNamespace(t)
	mallory := userEditingOnly(t, nsA, "mallory")
	for _, ns := range []string{nsA, nsB} {
		c := env.Client
		if ns == nsA {
			c = mallory
		}
		pool := &taskerv1alpha1.WorkerPool{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "workers"},
			Spec: taskerv1alpha1.WorkerPoolSpec{
				Queues:   []string{"default"},
				Database: &taskerv1alpha1.DatabaseSecretRef{SecretName: "pg"},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "w"}}}},
				Scaling:  taskerv1alpha1.ScalingSpec{PollingIntervalSeconds: ptr.To(int32(1)), MaxReplicas: ptr.To(int32(3))},
			},
		}
		if err := c.Create(ctx, pool); err != nil {
			t.Fatalf("create pool in %s: %v", ns, err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pool) })
		if err := c.Create(ctx, newTask(ns, "job", step("only", "echo"))); err != nil {
			t.Fatalf("create task in %s: %v", ns, err)
		}
	}
	if err := mallory.Create(ctx, newTask(nsB, "intruder", step("only", "echo"))); !isForbidden(err) {
		t.Fatalf("a Task in namespace B by a user of A: %v, want Forbidden", err)
	}

	// Each pool serves its namespace's queue and counts only its own Task's step.
	served := map[string]string{}
	for _, ns := range []string{nsA, nsB} {
		want := queuescope.Namespaced(ns, "default")
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var p taskerv1alpha1.WorkerPool
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "workers"}, &p); err != nil {
				return false, err
			}
			return slices.Equal(p.Status.DatabaseQueues, []string{want}) && p.Status.Backlog == 1, nil
		})
		if err != nil {
			t.Fatalf("pool %s/workers: want databaseQueues [%s] and backlog 1: %v", ns, want, err)
		}
		var dep appsv1.Deployment
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "workers"}, &dep); err != nil {
			t.Fatal(err)
		}
		for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
			if e.Name == controllers.EnvQueues {
				served[ns] = e.Value
			}
		}
		if served[ns] != want {
			t.Fatalf("pool %s/workers: TASKER_QUEUES=%q, want %q", ns, served[ns], want)
		}
	}
	if served[nsA] == served[nsB] {
		t.Fatalf("both namespaces' pools serve %s", served[nsA])
	}

	// A's workers (on what A's Deployment tells them) run A's Task; B's step is untouched meanwhile.
	stopA := startWorkersOn(t, 1, served[nsA])
	waitPhase(t, nsA, "job", taskerv1alpha1.TaskSucceeded, time.Minute)
	stopA()
	// B's status may not record its task id yet (status writes are paced; its pool's backlog came first).
	var b *taskerv1alpha1.Task
	waitFor(t, 30*time.Second, "namespace B's Task to record its task id", func() (bool, error) {
		b = getTask(t, nsB, "job")
		return b.Status.TaskID != 0, fmt.Errorf("status %+v", b.Status)
	})
	st, err := engine.New(dbPool, engine.Options{}).GetTask(ctx, b.Status.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Steps[0]; s.Phase != engine.StepEnqueued || s.Attempts != 0 || s.Queue != served[nsB] {
		t.Fatalf("namespace B's step: %s on queue %s after %d attempts; want enqueued on %s, untouched by A's workers",
			s.Phase, s.Queue, s.Attempts, served[nsB])
	}
	startWorkersOn(t, 1, served[nsB])
	waitPhase(t, nsB, "job", taskerv1alpha1.TaskSucceeded, time.Minute)
	t.Logf("namespaces %s and %s: queue default is %s and %s", nsA, nsB, served[nsA], served[nsB])
}

// userEditingOnly returns a client of an impersonated user who may create and read Tasks and WorkerPools in ns
// (a Role bound there) and has no other rights.
func userEditingOnly(t *testing.T, ns, user string) client.Client {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{taskerv1alpha1.GroupVersion.Group},
			Resources: []string{"tasks", "workerpools"}, Verbs: []string{"create", "get", "list", "watch"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
