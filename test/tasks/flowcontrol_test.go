package tasks

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
)

// A concurrency group with maxRunning 2 and 10 Tasks, through the apiserver: never more than 2 of them running at
// once (from the tasks' start and finish times in the database), all finish, they start (get their slot: their
// step is enqueued) in the order they were admitted, and a waiting Task says what it waits for.
func TestConcurrencyGroupEndToEnd(t *testing.T) {
	ns := newNamespace(t)
	const n = 10
	for i := range n {
		tk := newTask(ns, fmt.Sprintf("batch-%02d", i), withInputs(step("work", "sleep"), `{"seconds":0.4}`))
		tk.Spec.Concurrency = &taskerv1alpha1.ConcurrencySpec{Group: "nightly", MaxRunning: 2}
		create(t, tk)
	}
	// Admitted before any worker runs: all but two wait (the reconciler admits them in any order; admission order is
	// the database's), and their status says so.
	waitFor(t, 30*time.Second, "eight Tasks to report their wait", func() (bool, error) {
		waiting := 0
		var last error
		for i := range n {
			tk := getTask(t, ns, fmt.Sprintf("batch-%02d", i))
			c := condition(tk, taskerv1alpha1.TaskConditionReady)
			if cs := tk.Status.Concurrency; cs != nil && cs.Waiting && c != nil && c.Reason == "WaitingForConcurrencyGroup" {
				waiting++
				if cs.Group != ns+"/nightly" || cs.MaxRunning != 2 || cs.Running != 2 || cs.Ahead > n-3 {
					return false, fmt.Errorf("%s: status.concurrency = %+v", tk.Name, cs)
				}
				continue
			}
			last = fmt.Errorf("%s: concurrency %+v, Ready %+v", tk.Name, tk.Status.Concurrency, c)
		}
		return waiting == n-2, fmt.Errorf("%d waiting; %v", waiting, last)
	})
	startWorkers(t, 4, ns, "default")

	var ids []int64
	for i := range n {
		tk := waitPhase(t, ns, fmt.Sprintf("batch-%02d", i), taskerv1alpha1.TaskSucceeded, 90*time.Second)
		ids = append(ids, tk.Status.TaskID)
		if tk.Status.Concurrency == nil || tk.Status.Concurrency.Waiting {
			t.Errorf("%s: status.concurrency %+v after it finished", tk.Name, tk.Status.Concurrency)
		}
	}
	ctx := ctxFor(t, 30*time.Second)
	// Per task: when it got its slot (its step was enqueued: at admission, or released with reason "concurrency
	// slot free"), and when it ran (started: first claimed; completed).
	rows, err := dbPool.Query(ctx, `
		SELECT t.id, (SELECT min(x.at) FROM tasker.step_transitions AS x WHERE x.task_id = t.id AND x.to_state = 'enqueued'),
		       t.started_at, t.completed_at
		FROM tasker.tasks AS t WHERE t.id = ANY ($1) ORDER BY t.id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		id               int64
		slot, start, end time.Time
	}
	var spans []span
	for rows.Next() {
		var s span
		if err := rows.Scan(&s.id, &s.slot, &s.start, &s.end); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, s)
	}
	rows.Close()
	if len(spans) != n {
		t.Fatalf("%d tasks in the database, want %d", len(spans), n)
	}
	for i, s := range spans {
		running := 0
		for _, o := range spans {
			if !o.start.After(s.start) && o.end.After(s.start) {
				running++
			}
		}
		if running > 2 {
			t.Errorf("%d tasks running when task %d started, want at most 2", running, s.id)
		}
		// Started in admission order: each got its slot after every task admitted before it. (The first claims
		// of two tasks whose slots came together may be taken by two workers in either order.)
		if i > 0 && s.slot.Before(spans[i-1].slot) {
			t.Errorf("task %d got its slot at %s, before task %d (admitted earlier) at %s", s.id, s.slot,
				spans[i-1].id, spans[i-1].slot)
		}
	}
}

// A Queue with a rate of 20 steps per second, through the apiserver: over 30 s of steady claiming, the steps of
// its queue start at 20/s within 10 % (measured from the claim times in the step history), and no window of
// claims exceeds the burst plus what the rate allows. Deleting the Queue lifts the limit.
func TestQueueRateEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s of rate-limited claiming")
	}
	ns := newNamespace(t)
	q := &taskerv1alpha1.Queue{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rated"},
		Spec: taskerv1alpha1.QueueSpec{Rate: &taskerv1alpha1.QueueRate{Steps: 20, PerSeconds: 1}, MaxRunning: ptr.To[int32](50)}}
	create(t, q)
	dbQueue := queuescope.Namespaced(ns, "rated")
	waitFor(t, 30*time.Second, "the Queue to be Ready", func() (bool, error) {
		var cur taskerv1alpha1.Queue
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(q), &cur); err != nil {
			return false, err
		}
		for _, c := range cur.Status.Conditions {
			if c.Type == taskerv1alpha1.QueueConditionReady && c.Status == metav1.ConditionTrue &&
				c.ObservedGeneration == cur.Generation && cur.Status.DatabaseQueue == dbQueue {
				return true, nil
			}
		}
		return false, fmt.Errorf("status %+v", cur.Status)
	})

	// 620 steps: the burst of 20, then 30 s at 20/s.
	const steps = 620
	var specs []taskerv1alpha1.StepSpec
	for i := range steps {
		specs = append(specs, step(fmt.Sprintf("s%03d", i), "echo"))
	}
	tk := newTask(ns, "many", specs...)
	tk.Spec.Queue = "rated"
	create(t, tk)
	startWorkers(t, 4, ns, "rated")
	done := waitPhase(t, ns, "many", taskerv1alpha1.TaskSucceeded, 90*time.Second)

	ctx := ctxFor(t, 30*time.Second)
	rows, err := dbPool.Query(ctx, `SELECT at FROM tasker.step_transitions
		WHERE task_id = $1 AND to_state = 'running' ORDER BY at`, done.Status.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	var at []time.Time
	for rows.Next() {
		var ts time.Time
		if err := rows.Scan(&ts); err != nil {
			t.Fatal(err)
		}
		at = append(at, ts)
	}
	rows.Close()
	if len(at) != steps {
		t.Fatalf("%d claims, want %d", len(at), steps)
	}
	elapsed := at[len(at)-1].Sub(at[0]).Seconds()
	rate := float64(steps-20) / elapsed // the first 20 are the bucket's burst
	t.Logf("%d claims over %.1f s: %.2f/s after the burst", steps, elapsed, rate)
	if rate < 18 || rate > 22 {
		t.Errorf("rate %.2f/s over %.1f s, want 20/s within 10%%", rate, elapsed)
	}
	for i := range at {
		for j := i + 20; j < len(at); j += 20 {
			// A second of slack: a claim's history rows are written some time after it took its tokens (on a
			// loaded machine, up to a good part of a second).
			if allowed := 20 + 20*(at[j].Sub(at[i]).Seconds()+1); float64(j-i+1) > allowed {
				t.Fatalf("claims %d..%d: %d in %s, more than the rate allows", i, j, j-i+1, at[j].Sub(at[i]))
			}
		}
	}

	if err := env.Client.Delete(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the limits to be lifted", func() (bool, error) {
		var n int
		if err := dbPool.QueryRow(ctx, `SELECT count(*) FROM tasker.queue_limits WHERE queue = $1`, dbQueue).Scan(&n); err != nil {
			return false, err
		}
		return n == 0, fmt.Errorf("%d limit rows", n)
	})
}

// queueReady waits for a Queue's Ready condition to have status and reason, for its generation.
func queueReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *taskerv1alpha1.Queue {
	t.Helper()
	var cur taskerv1alpha1.Queue
	waitFor(t, 30*time.Second, fmt.Sprintf("Queue %s Ready=%s %s", name, status, reason), func() (bool, error) {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cur); err != nil {
			return false, err
		}
		for _, c := range cur.Status.Conditions {
			if c.Type == taskerv1alpha1.QueueConditionReady && c.Status == status && c.Reason == reason &&
				c.ObservedGeneration == cur.Generation {
				return true, nil
			}
		}
		return false, fmt.Errorf("status %+v", cur.Status)
	})
	return &cur
}

func limitRow(t *testing.T, queue string) (maxRunning *int32, found bool) {
	t.Helper()
	err := dbPool.QueryRow(context.Background(), `SELECT max_running FROM tasker.queue_limits WHERE queue = $1`, queue).
		Scan(&maxRunning)
	if err != nil {
		return nil, false
	}
	return maxRunning, true
}

// Queue resources: CEL refuses one without limits and a name that is no queue name without spec.queue; two Queues
// of one queue — the older one's limits apply, the other reports Conflict and takes over when the first is
// deleted; an edit reaches the database; deleting the last lifts the limits.
func TestQueueResources(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	for _, bad := range []*taskerv1alpha1.Queue{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nolimits"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "not-a-queue-name"}, Spec: taskerv1alpha1.QueueSpec{MaxRunning: ptr.To[int32](1)}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "zero"}, Spec: taskerv1alpha1.QueueSpec{MaxRunning: ptr.To[int32](0)}},
	} {
		if err := env.Client.Create(ctx, bad); err == nil {
			t.Errorf("Queue %s was accepted", bad.Name)
		}
	}
	first := &taskerv1alpha1.Queue{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mail-limits"},
		Spec: taskerv1alpha1.QueueSpec{Queue: "mail", MaxRunning: ptr.To[int32](3)}}
	create(t, first)
	queueReady(t, ns, first.Name, metav1.ConditionTrue, "LimitsInForce")
	// Created later (or in the same second: then the name decides, and "mail-limits" sorts first).
	second := &taskerv1alpha1.Queue{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mail-limits-2"},
		Spec: taskerv1alpha1.QueueSpec{Queue: "mail", MaxRunning: ptr.To[int32](7)}}
	create(t, second)
	queueReady(t, ns, second.Name, metav1.ConditionFalse, "Conflict")
	dbQueue := queuescope.Namespaced(ns, "mail")
	if m, ok := limitRow(t, dbQueue); !ok || *m != 3 {
		t.Fatalf("limit row %v %v, want max_running 3", m, ok)
	}
	cur := queueReady(t, ns, first.Name, metav1.ConditionTrue, "LimitsInForce")
	cur.Spec.MaxRunning = ptr.To[int32](4)
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the edit to reach the database", func() (bool, error) {
		m, ok := limitRow(t, dbQueue)
		return ok && *m == 4, fmt.Errorf("%v %v", m, ok)
	})
	if err := env.Client.Delete(ctx, cur); err != nil {
		t.Fatal(err)
	}
	queueReady(t, ns, second.Name, metav1.ConditionTrue, "LimitsInForce")
	waitFor(t, 30*time.Second, "the second Queue's limits", func() (bool, error) {
		m, ok := limitRow(t, dbQueue)
		return ok && *m == 7, fmt.Errorf("%v %v", m, ok)
	})
	if err := env.Client.Delete(ctx, second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the limits to be lifted", func() (bool, error) {
		_, ok := limitRow(t, dbQueue)
		return !ok, nil
	})
}

// spec.concurrency: schema defaults (maxRunning 1, strategy Queue), CEL refuses a bad group or strategy and an
// edit after creation, and the webhook refuses a key PostgreSQL cannot parse.
func TestConcurrencySpecValidation(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	tk := newTask(ns, "grouped", step("a", "echo"))
	tk.Spec.Concurrency = &taskerv1alpha1.ConcurrencySpec{Group: "g"}
	create(t, tk)
	got := getTask(t, ns, "grouped")
	if c := got.Spec.Concurrency; c.MaxRunning != 1 || c.Strategy != taskerv1alpha1.ConcurrencyQueue {
		t.Fatalf("defaults: %+v", c)
	}
	got.Spec.Concurrency.MaxRunning = 2
	if err := env.Client.Update(ctx, got); err == nil {
		t.Error("spec.concurrency was changed after creation")
	}
	for i, c := range []taskerv1alpha1.ConcurrencySpec{
		{Group: "Bad Group"},
		{Group: "g", Strategy: "Later"},
		{Group: "g", MaxRunning: 10001},
		{Group: "g", Key: "$.("},
	} {
		bad := newTask(ns, fmt.Sprintf("bad-%d", i), step("a", "echo"))
		bad.Spec.Concurrency = &c
		if err := env.Client.Create(ctx, bad); err == nil {
			t.Errorf("%+v was accepted", c)
		}
	}
}
