package workerpool

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// Acceptance 4: two pools on their own queues scale independently (one of them summing two queues), and a
// deleted pool's Deployment is owned by it, so the garbage collector removes it.
func TestPoolsScaleIndependently(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	a1, a2, b := newQueue(t, ns, "a"), newQueue(t, ns, "a"), newQueue(t, ns, "b")
	log := watchReplicas(t, ns)
	newPool(t, ns, "pool-a", []string{a1, a2}, scalingOpts{min: 0, max: 10, target: 125, window: 1, cooldown: 2})
	poolB := newPool(t, ns, "pool-b", []string{b}, scalingOpts{min: 0, max: 10, target: 10, window: 1, cooldown: 2})

	send(t, ns, a1, 250)
	send(t, ns, a2, 250) // 500 over two queues at 125 per replica: 4
	send(t, ns, b, 30)   // 30 at 10 per replica: 3
	waitReplicas(t, ns, "pool-a", 4, 30*time.Second)
	waitReplicas(t, ns, "pool-b", 3, 30*time.Second)
	// The status is written right after the Deployment: wait for it rather than race it.
	waitFor(t, 10*time.Second, "pool-a's status to show backlog 500 (both queues)", func() (bool, error) {
		p := getPool(t, ns, "pool-a")
		return p.Status.Backlog == 500, fmt.Errorf("backlog %d", p.Status.Backlog)
	})

	// Draining pool-a's queues takes it to zero; pool-b keeps its 3 throughout.
	purge(t, ns, a1)
	purge(t, ns, a2)
	waitReplicas(t, ns, "pool-a", 0, 30*time.Second)
	if got := log.values("pool-b"); !slices.Equal(got, []int32{0, 3}) && !slices.Equal(got, []int32{3}) {
		t.Errorf("pool-b replica counts %v while pool-a drained, want to stay at 3", got)
	}
	// The watch may deliver the last change a moment after the Deployment is read at 0.
	waitFor(t, 10*time.Second, "pool-a's replica counts to reach 4 and come back to 0", func() (bool, error) {
		got := log.values("pool-a")
		return slices.Max(got) == 4 && got[len(got)-1] == 0, fmt.Errorf("replica counts %v", got)
	})

	// The Deployment is owned by its pool: controller reference with blockOwnerDeletion, so deleting the pool
	// (foreground or background) deletes it. envtest runs no garbage collector, so the test checks the reference
	// and that the operator forgets the pool.
	dep, err := getDeployment(ns, "pool-b")
	if err != nil {
		t.Fatal(err)
	}
	ref := metav1.GetControllerOf(dep)
	if ref == nil || ref.Kind != "WorkerPool" || ref.Name != "pool-b" || ref.UID != poolB.UID ||
		ref.APIVersion != taskerv1alpha1.GroupVersion.String() || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Fatalf("deployment owner reference %+v, want controller WorkerPool pool-b (uid %s) blocking owner deletion", ref, poolB.UID)
	}
	if _, ok := gauge(t, "tasker_workerpool_desired_replicas", ns, "pool-b"); !ok {
		t.Fatalf("no desired-replicas series for pool-b")
	}
	if err := env.Client.Delete(context.Background(), poolB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "pool-b gone and its metric series deleted", func() (bool, error) {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(poolB), &taskerv1alpha1.WorkerPool{})
		_, backlog := gauge(t, "tasker_workerpool_backlog", ns, "pool-b")
		_, desired := gauge(t, "tasker_workerpool_desired_replicas", ns, "pool-b")
		return apierrors.IsNotFound(err) && !backlog && !desired, err
	})
	// What the garbage collector does with the owner reference, done by hand: the pool is gone, so the
	// Deployment may go, and the operator does not recreate it.
	if err := env.Client.Delete(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "pool-b's deployment deleted", func() (bool, error) {
		_, err := getDeployment(ns, "pool-b")
		return apierrors.IsNotFound(err), err
	})
	// pool-a is unaffected and still polled: new work scales it up again.
	send(t, ns, a2, 10)
	waitReplicas(t, ns, "pool-a", 1, 30*time.Second)
	if _, err := getDeployment(ns, "pool-b"); !apierrors.IsNotFound(err) {
		t.Errorf("pool-b's deployment came back after the pool was deleted: %v", err)
	}
}

// The Deployment carries the pool's template with the worker configuration injected, template changes roll
// out, and the operator alone decides replicas.
func TestDeploymentFromTemplate(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	q1, q2 := newQueue(t, ns, "tmpl"), newQueue(t, ns, "tmpl")
	newPool(t, ns, "custom", []string{q1, q2}, scalingOpts{min: 1, max: 4, target: 10, window: 1, cooldown: 1},
		func(p *taskerv1alpha1.WorkerPool) {
			p.Spec.Slots = 8
			p.Spec.TerminationGracePeriodSeconds = 42
			p.Spec.Database = &taskerv1alpha1.DatabaseSecretRef{SecretName: "pg", Key: "dsn"}
			p.Spec.Template = corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "billing", controllers.LabelWorkerPool: "spoofed"}},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "init", Image: "init:dev"}},
					Containers: []corev1.Container{
						{Name: "worker", Image: "worker:v1", Env: []corev1.EnvVar{
							{Name: "FOO", Value: "$(TASKER_QUEUES)"}, {Name: "TASKER_QUEUES", Value: "overridden"},
						}},
						{Name: "sidecar", Image: "sidecar:dev"},
					},
				},
			}
		})

	p := waitCondition(t, ns, "custom", taskerv1alpha1.WorkerPoolConditionReady, metav1.ConditionTrue, "DeploymentReconciled", 30*time.Second)
	dep, err := getDeployment(ns, "custom")
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 1 {
		t.Errorf("replicas %d, want minReplicas 1", *dep.Spec.Replicas)
	}
	if got := dep.Spec.Selector.MatchLabels; len(got) != 1 || got[controllers.LabelWorkerPool] != "custom" {
		t.Errorf("selector %v", got)
	}
	// (The template's own labels are merged in too, but the CRD currently prunes spec.template.metadata; the
	// controllers' unit tests cover the merge.)
	if tl := dep.Spec.Template.Labels; tl[controllers.LabelWorkerPool] != "custom" {
		t.Errorf("template labels %v: want the pool's label", tl)
	}
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 42 {
		t.Errorf("terminationGracePeriodSeconds %v, want 42", g)
	}
	for _, c := range append(dep.Spec.Template.Spec.InitContainers, dep.Spec.Template.Spec.Containers...) {
		checkInjectedEnv(t, c, queuescope.Namespaced(ns, q1)+","+queuescope.Namespaced(ns, q2))
	}
	if env := dep.Spec.Template.Spec.Containers[0].Env; env[len(env)-1].Name != "FOO" {
		t.Errorf("the template's own variables should follow the injected ones: %v", env)
	}
	checkConditionsCurrent(t, p)

	// Someone scales the Deployment by hand: the operator, the only writer of replicas, puts its count back.
	hand := dep.DeepCopy()
	hand.Spec.Replicas = ptr.To(int32(7))
	if err := env.Client.Patch(context.Background(), hand, client.MergeFrom(dep)); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, ns, "custom", 1, 30*time.Second)

	// A template change rolls out (the Deployment's template follows), replicas untouched.
	send(t, ns, q1, 20) // 2 replicas
	waitReplicas(t, ns, "custom", 2, 30*time.Second)
	oldHash := mustDeployment(t, ns, "custom").Annotations[controllers.AnnotationTemplateHash]
	pool := getPool(t, ns, "custom")
	base := pool.DeepCopy()
	pool.Spec.Template.Spec.Containers[0].Image = "worker:v2"
	// A merge patch: the operator writes the status concurrently, so an Update could conflict.
	if err := env.Client.Patch(context.Background(), pool, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the new image in the deployment", func() (bool, error) {
		d := mustDeployment(t, ns, "custom")
		return d.Spec.Template.Spec.Containers[0].Image == "worker:v2", nil
	})
	d := mustDeployment(t, ns, "custom")
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d after a template change, want 2", *d.Spec.Replicas)
	}
	if d.Annotations[controllers.AnnotationTemplateHash] == oldHash {
		t.Errorf("template hash unchanged after a template change")
	}
	p = waitCondition(t, ns, "custom", taskerv1alpha1.WorkerPoolConditionReady, metav1.ConditionTrue, "DeploymentReconciled", 10*time.Second)
	waitFor(t, 10*time.Second, "status of generation 2", func() (bool, error) {
		p = getPool(t, ns, "custom")
		return p.Status.ObservedGeneration == p.Generation, nil
	})
	checkConditionsCurrent(t, p)
}

func mustDeployment(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := getDeployment(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func checkInjectedEnv(t *testing.T, c corev1.Container, queues string) {
	t.Helper()
	byName := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := byName[e.Name]; dup {
			t.Errorf("container %s: %s set twice", c.Name, e.Name)
		}
		byName[e.Name] = e
	}
	if v := byName[controllers.EnvQueues]; v.Value != queues {
		t.Errorf("container %s: TASKER_QUEUES %+v, want %q", c.Name, v, queues)
	}
	if v := byName[controllers.EnvSlots]; v.Value != "8" {
		t.Errorf("container %s: TASKER_SLOTS %+v", c.Name, v)
	}
	if v := byName[controllers.EnvDatabaseURL]; v.ValueFrom == nil || v.ValueFrom.SecretKeyRef == nil ||
		v.ValueFrom.SecretKeyRef.Name != "pg" || v.ValueFrom.SecretKeyRef.Key != "dsn" {
		t.Errorf("container %s: TASKER_DATABASE_URL %+v", c.Name, v)
	}
	if v := byName[controllers.EnvWorkerID]; v.Value != "$(POD_NAMESPACE)/$(TASKER_POD_NAME)" {
		t.Errorf("container %s: TASKER_WORKER_ID %+v, want the Pod's namespace and name", c.Name, v)
	}
	if v := byName[controllers.EnvPodName]; v.ValueFrom == nil || v.ValueFrom.FieldRef == nil ||
		v.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("container %s: TASKER_POD_NAME %+v", c.Name, v)
	}
	if v := byName[controllers.EnvPodNamespace]; v.ValueFrom == nil || v.ValueFrom.FieldRef == nil ||
		v.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("container %s: POD_NAMESPACE %+v", c.Name, v)
	}
}
