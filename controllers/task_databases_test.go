package controllers

import (
	"context"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// routedDatabases routes every namespace to route (none: no database) and knows the databases in dbs.
type routedDatabases struct {
	route string
	dbs   map[string]Database
}

func (f *routedDatabases) ForNamespace(_ context.Context, ns string) (Database, error) {
	if f.route == "" {
		return Database{}, fmt.Errorf("%w: no database for namespace %s", ErrNoDatabase, ns)
	}
	return f.Named(f.route)
}

func (f *routedDatabases) Several() bool { return len(f.dbs) > 1 }

func (f *routedDatabases) Named(name string) (Database, error) {
	if db, ok := f.dbs[name]; ok {
		return db, nil
	}
	return Database{}, fmt.Errorf("%w: TaskerDatabase %s does not exist", ErrNoDatabase, name)
}

// A Task is admitted into its namespace's database and recorded there; it stays there when the namespace's
// binding changes; a namespace without a database says so.
func TestReconcileRoutesTasksByDatabase(t *testing.T) {
	b := newReconcileBundle(t, newTestTask("t"), newTestTask("u"), newTestTask("v"))
	east, west := newFakeEngine(), newFakeEngine()
	dbs := &routedDatabases{route: "east", dbs: map[string]Database{
		"east": {Name: "east", Tasks: east}, "west": {Name: "west", Tasks: west}}}
	b.r.Databases = dbs

	b.admitAndWrite(t, "t")
	if tk := b.task(t, "t"); tk.Status.Database != "east" || tk.Status.TaskID == 0 || len(east.tasks) != 1 {
		t.Fatalf("status %+v, east holds %d tasks", tk.Status, len(east.tasks))
	}
	dbs.route = "west" // the namespace moved: t stays, u goes to west
	b.reconcile(t, "t")
	b.admitAndWrite(t, "u")
	if len(east.tasks) != 1 || len(west.tasks) != 1 {
		t.Fatalf("tasks in east %d, west %d, want 1 and 1", len(east.tasks), len(west.tasks))
	}
	if tk := b.task(t, "u"); tk.Status.Database != "west" {
		t.Errorf("u: database %q, want west", tk.Status.Database)
	}

	dbs.route = ""
	b.reconcile(t, "v")
	tk := b.task(t, "v")
	wantCondition(t, tk, taskerv1alpha1.TaskConditionDatabaseReachable, metav1.ConditionFalse, ReasonNoDatabase)
	if tk.Status.Database != "" || tk.Status.TaskID != 0 {
		t.Errorf("v: status %+v, want nothing admitted", tk.Status)
	}

	// Deleting a Task that never had a database does not wait for one.
	if err := b.c.Delete(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	b.reconcile(t, "v")
	if err := b.c.Get(context.Background(), client.ObjectKeyFromObject(tk), tk); !apierrors.IsNotFound(err) {
		t.Errorf("v after deletion: %v, want it gone", err)
	}

	delete(dbs.dbs, "east") // t's database removed: t says so and keeps its record
	b.reconcile(t, "t")
	tk = b.task(t, "t")
	wantCondition(t, tk, taskerv1alpha1.TaskConditionDatabaseReachable, metav1.ConditionFalse, ReasonNoDatabase)
	if tk.Status.Database != "east" {
		t.Errorf("t: database %q, want east kept", tk.Status.Database)
	}
}
