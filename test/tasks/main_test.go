// Package tasks tests the Task and TaskTemplate controllers end to end: a real kube-apiserver (envtest), a real
// PostgreSQL, the operator as it ships (operator.Setup), and workers running steps through the SQL protocol.
package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jackc/pgx/v5/pgxpool"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

var (
	env    *testenv.Env
	db     *operator.Database
	dbPool *pgxpool.Pool // a second pool for assertions, independent of the operator's
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	teardown, err := pgtest.Setup(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer teardown()
	url, err := pgtest.CreateDatabase("operator")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db, err = operator.NewDatabase(url, store.Options{MaxConns: 10}, engine.Options{}, false, testenv.Logger())
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for db.Ready() != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "database never became ready")
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	dbPool, err = store.Open(ctx, url, store.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer dbPool.Close()
	return m.Run()
}

func newNamespace(t *testing.T) string { return env.NewNamespace(t, "t") }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var waitFor = testenv.WaitFor

func getTask(t *testing.T, ns, name string) *taskerv1alpha1.Task {
	t.Helper()
	var tk taskerv1alpha1.Task
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &tk); err != nil {
		t.Fatalf("get task %s/%s: %v", ns, name, err)
	}
	return &tk
}

// waitPhase waits until the Task reaches phase and returns it.
func waitPhase(t *testing.T, ns, name string, phase taskerv1alpha1.TaskPhase, d time.Duration) *taskerv1alpha1.Task {
	t.Helper()
	var tk taskerv1alpha1.Task
	waitFor(t, d, fmt.Sprintf("Task %s/%s to be %s", ns, name, phase), func() (bool, error) {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &tk); err != nil {
			return false, err
		}
		return tk.Status.Phase == phase, fmt.Errorf("phase %q, progress %s, conditions %v", tk.Status.Phase, tk.Status.Progress, tk.Status.Conditions)
	})
	return &tk
}

func condition(tk *taskerv1alpha1.Task, condType string) *metav1.Condition {
	for i := range tk.Status.Conditions {
		if tk.Status.Conditions[i].Type == condType {
			return &tk.Status.Conditions[i]
		}
	}
	return nil
}

// events lists the Events recorded for a Task.
func events(t *testing.T, ns, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "Task" {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(evs []eventsv1.Event, reason, noteContains string) bool {
	for _, e := range evs {
		if e.Reason == reason && strings.Contains(e.Note, noteContains) {
			return true
		}
	}
	return false
}

// ---- workers ----

// testWorker runs steps of some queues through the SQL protocol, with handlers that mirror the reference
// worker's built-ins used by the samples: echo, sleep, fail.
type testWorker struct {
	eng    *engine.Engine
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWorkers starts n claim loops per queue of namespace ns (its database queues), stopped at the end of the
// test.
func startWorkers(t *testing.T, n int, ns string, queues ...string) {
	t.Helper()
	startWorkersOn(t, n, queuescope.Scope{}.DatabaseQueues(ns, queues)...)
}

// startWorkersOn starts n claim loops per database queue, stopped at the end of the test (or by the returned
// function).
func startWorkersOn(t *testing.T, n int, databaseQueues ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &testWorker{eng: engine.New(dbPool, engine.Options{}), cancel: cancel}
	for _, q := range databaseQueues {
		for range n {
			w.wg.Add(1)
			go w.loop(ctx, q)
		}
	}
	stop = func() { cancel(); w.wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func (w *testWorker) loop(ctx context.Context, queue string) {
	defer w.wg.Done()
	for ctx.Err() == nil {
		steps, err := w.eng.Claim(ctx, queue, 16, 30*time.Second, "test-worker")
		if err != nil || len(steps) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		for _, s := range steps {
			result, failure := handle(ctx, s)
			if failure != nil {
				_, _ = w.eng.Fail(ctx, s.Lease, *failure)
				continue
			}
			_ = w.eng.Complete(ctx, s.Lease, result)
		}
	}
}

func handle(ctx context.Context, s engine.ClaimedStep) (json.RawMessage, *engine.Failure) {
	var in struct {
		Seconds   float64 `json:"seconds"`
		FailTimes int     `json:"failTimes"`
		Permanent bool    `json:"permanent"`
		Message   string  `json:"message"`
	}
	_ = json.Unmarshal(s.Inputs, &in)
	switch s.Handler {
	case "echo": // as the reference worker's: a map instance echoes its item
		if s.ItemIndex >= 0 {
			return s.Item, nil
		}
		return s.Inputs, nil
	case "join": // its dependencies' results, by name
		out, err := json.Marshal(s.DependencyResults)
		if err != nil {
			return nil, &engine.Failure{Message: err.Error(), Permanent: true}
		}
		return out, nil
	case "sleep":
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(in.Seconds * float64(time.Second))):
		}
		return json.RawMessage(`{"slept":true}`), nil
	case "fail":
		msg := in.Message
		if msg == "" {
			msg = "failed on purpose"
		}
		if in.Permanent {
			return nil, &engine.Failure{Message: msg, Permanent: true}
		}
		if s.Attempt <= in.FailTimes {
			return nil, &engine.Failure{Message: msg}
		}
		return json.RawMessage(`{"ok":true}`), nil
	default:
		return nil, &engine.Failure{Message: "no handler " + s.Handler, Permanent: true}
	}
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func isForbidden(err error) bool { return apierrors.IsForbidden(err) }
