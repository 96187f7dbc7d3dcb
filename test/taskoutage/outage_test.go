// Package taskoutage stops PostgreSQL in the middle of a run. It has a cluster of its own (this test binary's),
// since stopping the server affects every test using it.
package taskoutage

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

var (
	env   *testenv.Env
	db    *operator.Database
	dbURL string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		fmt.Println("skipping: the outage test needs a cluster of its own, not " + pgtest.EnvDatabaseURL)
		return 0
	}
	teardown, err := pgtest.Setup(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer teardown()
	if dbURL, err = pgtest.CreateDatabase("operator"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db, err = operator.NewDatabase(dbURL, store.Options{MaxConns: 8}, engine.Options{QueryTimeout: 2 * time.Second}, false, testenv.Logger())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err = testenv.Start(testenv.Options{Operator: operator.Options{Database: db, UpkeepInterval: time.Second}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	return m.Run()
}

// worker claims and completes echo steps, surviving database errors (it just tries again).
func worker(ctx context.Context, queue string) {
	for ctx.Err() == nil {
		pool, err := store.Open(ctx, dbURL, store.Options{MaxConns: 2})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		eng := engine.New(pool, engine.Options{QueryTimeout: 2 * time.Second})
		for ctx.Err() == nil {
			steps, err := eng.Claim(ctx, queue, 8, 10*time.Second, "outage-worker")
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if len(steps) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
			for _, s := range steps {
				// Slow enough that the outage lands mid-run.
				time.Sleep(200 * time.Millisecond)
				_ = eng.Complete(ctx, s.Lease, s.Inputs)
			}
		}
		pool.Close()
	}
}

func TestOutageMidRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for ctx := context.Background(); db.Ready() != nil; {
		if err := ctx.Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "outage-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	const tasks, chain = 10, 6
	for i := range tasks {
		steps := make([]taskerv1alpha1.StepSpec, chain)
		for j := range steps {
			steps[j] = taskerv1alpha1.StepSpec{Name: fmt.Sprintf("s%d", j), Handler: "echo",
				Inputs: &apiextensionsv1.JSON{Raw: []byte(`{"n":1}`)}}
			if j > 0 {
				steps[j].DependsOn = []string{fmt.Sprintf("s%d", j-1)}
			}
		}
		tk := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("chain-%d", i)},
			Spec: taskerv1alpha1.TaskSpec{Steps: steps}}
		if err := env.Client.Create(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	go worker(ctx, queuescope.Namespaced(ns.Name, "default"))

	list := func() []taskerv1alpha1.Task {
		var l taskerv1alpha1.TaskList
		if err := env.Client.List(ctx, &l, client.InNamespace(ns.Name)); err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	waitFor := func(d time.Duration, what string, cond func([]taskerv1alpha1.Task) bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond(list()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, list()[0].Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Mid-run: every Task admitted and running.
	waitFor(30*time.Second, "Tasks running", func(items []taskerv1alpha1.Task) bool {
		running := 0
		for _, tk := range items {
			if tk.Status.Phase == taskerv1alpha1.TaskRunning {
				running++
			}
		}
		return running == tasks
	})

	pgtest.Shared().Pause()
	t.Log("PostgreSQL stopped")
	// A quiet Task may not be reconciled for minutes (nothing changes while the database is down): touch every
	// Task, as a user editing it would, so that each is reconciled during the outage.
	for _, tk := range list() {
		patch := client.MergeFrom(tk.DeepCopy())
		metav1.SetMetaDataAnnotation(&tk.ObjectMeta, "test.tasker.dev/outage", "1")
		if err := env.Client.Patch(ctx, &tk, patch); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(60*time.Second, "conditions to show the outage", func(items []taskerv1alpha1.Task) bool {
		down := 0
		for _, tk := range items {
			for _, c := range tk.Status.Conditions {
				if c.Type == taskerv1alpha1.TaskConditionDatabaseReachable && c.Status == metav1.ConditionFalse {
					down++
				}
			}
		}
		return down == tasks
	})
	time.Sleep(3 * time.Second) // keep it down across several retries
	if err := pgtest.Shared().Resume(ctx); err != nil {
		t.Fatal(err)
	}
	t.Log("PostgreSQL started again")

	waitFor(90*time.Second, "every Task to succeed", func(items []taskerv1alpha1.Task) bool {
		for _, tk := range items {
			if tk.Status.Phase != taskerv1alpha1.TaskSucceeded {
				return false
			}
			for _, c := range tk.Status.Conditions {
				if c.Type == taskerv1alpha1.TaskConditionDatabaseReachable && c.Status != metav1.ConditionTrue {
					return false
				}
			}
		}
		return true
	})
	// The manager is still running (it never exited).
	select {
	case err := <-env.ManagerExited():
		t.Fatalf("the manager exited: %v", err)
	default:
	}
}
