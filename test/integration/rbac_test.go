package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// TestUserRolesGrantOneNamespace: the user-facing ClusterRoles of config/rbac/aggregate_roles.yaml, bound in one
// namespace, give a user what the role says there and nothing in another namespace, through the apiserver's real
// RBAC with impersonated users: an editor creates, changes and deletes Tasks but cannot write their status (the
// operator's record of which workflow is theirs), a viewer only reads (issue 13).
func TestUserRolesGrantOneNamespace(t *testing.T) {
	ctx := ctxT(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "aggregate_roles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	suffix := "-" + newNamespace(t) // ClusterRoles are cluster-wide: names of this test's own
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if u.Object == nil {
			continue
		}
		u.SetName(u.GetName() + suffix)
		if err := env.Client.Create(ctx, &u); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(ctxT(t), &u) })
	}

	mine, other := newNamespace(t), newNamespace(t)
	for user, role := range map[string]string{"alice": "user-edit", "bob": "user-view"} {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: mine},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role + suffix},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: user, APIGroup: "rbac.authorization.k8s.io"}},
		}
		if err := env.Client.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}
	as := func(user string) client.Client {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		c, err := client.New(cfg, client.Options{Scheme: env.Client.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	alice, bob := as("alice"), as("bob")
	newTask := func(ns string) *taskerv1alpha1.Task {
		tk := task(step("a", "echo"))
		tk.Namespace = ns
		return tk
	}
	// The authorizer sees new bindings through an informer: the first call may come too early.
	tk := newTask(mine)
	for err := alice.Create(ctx, tk); err != nil; err = alice.Create(ctx, tk) {
		if !apierrors.IsForbidden(err) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("the editor creates a Task in her namespace: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want forbidden", what, err)
		}
	}
	allowed := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v, want allowed", what, err)
		}
	}

	patch := client.MergeFrom(tk.DeepCopy())
	tk.Spec.Cancel = true
	allowed("the editor cancels her Task", alice.Patch(ctx, tk, patch))
	statusPatch := client.MergeFrom(tk.DeepCopy())
	tk.Status.TaskID = 12345
	forbidden("the editor writes her Task's status", alice.Status().Patch(ctx, tk, statusPatch))
	forbidden("the editor creates a Task in another namespace", alice.Create(ctx, newTask(other)))
	forbidden("the editor lists Tasks in another namespace", alice.List(ctx, &taskerv1alpha1.TaskList{}, client.InNamespace(other)))
	forbidden("the editor creates a WorkerPool in another namespace", alice.Create(ctx, func() *taskerv1alpha1.WorkerPool {
		p := pool(func(*taskerv1alpha1.WorkerPool) {})
		p.Namespace = other
		return p
	}()))
	p := pool(func(*taskerv1alpha1.WorkerPool) {})
	p.Namespace = mine
	allowed("the editor creates a WorkerPool in her namespace", alice.Create(ctx, p))

	ct := cronTask(func(c *taskerv1alpha1.CronTask) { c.Namespace = mine })
	allowed("the editor creates a CronTask in her namespace", alice.Create(ctx, ct))
	ctStatus := client.MergeFrom(ct.DeepCopy())
	ct.Status.ActiveCount = 3
	forbidden("the editor writes her CronTask's status", alice.Status().Patch(ctx, ct, ctStatus))
	forbidden("the editor creates a CronTask in another namespace",
		alice.Create(ctx, cronTask(func(c *taskerv1alpha1.CronTask) { c.Namespace = other })))
	allowed("the viewer lists CronTasks", bob.List(ctx, &taskerv1alpha1.CronTaskList{}, client.InNamespace(mine)))
	forbidden("the viewer suspends a CronTask", bob.Patch(ctx, ct, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":true}}`))))

	allowed("the viewer lists Tasks", bob.List(ctx, &taskerv1alpha1.TaskList{}, client.InNamespace(mine)))
	forbidden("the viewer creates a Task", bob.Create(ctx, newTask(mine)))
	forbidden("the viewer deletes a Task", bob.Delete(ctx, tk))
	forbidden("the viewer reads another namespace", bob.List(ctx, &taskerv1alpha1.TaskList{}, client.InNamespace(other)))
	allowed("the editor deletes her Task", alice.Delete(ctx, tk))
}
