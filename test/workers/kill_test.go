package workers

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// killSpec is the task of the kill test: a small DAG of echo steps with one slower step, so that killed workers
// often hold a step in flight.
//
//	a ──> b (sleep 0.2 s) ──> d ──> e
//	  └─> c ───────────────┘
func killSpec(i int) engine.TaskSpec {
	// A killed worker's steps come back as new attempts; allow a few so that a step whose workers are killed
	// again and again still ends succeeded (what is tested is exactly-once state, not the retry budget).
	retry := engine.RetryPolicy{MaxAttempts: 6, BackoffBase: 100 * time.Millisecond}
	in := json.RawMessage(fmt.Sprintf(`{"task":%d}`, i))
	return engine.TaskSpec{
		ExternalKey: fmt.Sprintf("kill-%d", i),
		Queue:       "default",
		Steps: []engine.StepSpec{
			{Name: "a", Handler: "echo", Inputs: in, Retry: retry},
			{Name: "b", Handler: "sleep", Inputs: json.RawMessage(`{"seconds":0.2}`), DependsOn: []string{"a"}, Retry: retry},
			{Name: "c", Handler: "echo", Inputs: in, DependsOn: []string{"a"}, Retry: retry},
			{Name: "d", Handler: "echo", Inputs: in, DependsOn: []string{"b", "c"}, Retry: retry},
			{Name: "e", Handler: "echo", Inputs: in, DependsOn: []string{"d"}, Retry: retry},
		},
	}
}

// Acceptance 1: 8 reference-worker processes run 500 tasks of 5 steps while a random worker is SIGKILLed every
// second for 20 seconds (and restarted): every task ends succeeded, every step has exactly one succeeded
// transition.
func TestKillWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	tb := setup(t)
	const (
		workers  = 8
		tasks    = 500
		killFor  = 20 * time.Second
		stepsPer = 5
	)
	args := []string{"--slots", "4", "--visibility-timeout", "2s", "--poll-interval", "200ms", "--drain-timeout", "1s"}
	procs := make([]*proc, workers)
	incarnation := make([]int, workers)
	for i := range procs {
		procs[i] = tb.startWorker(t, fmt.Sprintf("w%d-0", i), args...)
	}

	// Admit the tasks over the kill window (25 a second), so that work is in flight at every kill.
	var admitErr error
	var admitted sync.WaitGroup
	admitted.Go(func() {
		tick := time.NewTicker(killFor / tasks * 9 / 10)
		defer tick.Stop()
		for i := range tasks {
			if _, err := tb.eng.Admit(tb.ctx, killSpec(i)); err != nil {
				admitErr = err
				return
			}
			<-tick.C
		}
	})

	kills := 0
	deadline := time.Now().Add(killFor)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		i := rand.IntN(workers)
		procs[i].signal(t, syscall.SIGKILL)
		if !procs[i].wait(5 * time.Second) {
			t.Fatalf("worker %s survived SIGKILL", procs[i].name)
		}
		kills++
		incarnation[i]++
		procs[i] = tb.startWorker(t, fmt.Sprintf("w%d-%d", i, incarnation[i]), args...)
	}
	admitted.Wait()
	if admitErr != nil {
		t.Fatal(admitErr)
	}

	// Everything finishes once the leases of the last killed workers have expired.
	wait := time.Now().Add(60 * time.Second)
	for {
		st := tb.taskStates(t)
		if st["pending"] == 0 && st["running"] == 0 {
			break
		}
		if time.Now().After(wait) {
			t.Fatalf("tasks not finished: %v, steps %v", st, tb.stepStates(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := tb.taskStates(t); st["succeeded"] != tasks {
		t.Fatalf("task states %v, want %d succeeded", st, tasks)
	}
	if st := tb.stepStates(t); st["succeeded"] != tasks*stepsPer {
		t.Fatalf("step states %v", st)
	}

	// Exactly one succeeded transition per step.
	var steps, bad, reclaimed int
	err := tb.pool.QueryRow(tb.ctx, `
		SELECT count(*),
		       count(*) FILTER (WHERE x.succeeded <> 1),
		       count(*) FILTER (WHERE x.max_attempt > 1)
		FROM (SELECT s.id,
		             (SELECT count(*) FROM tasker.step_transitions AS tr
		              WHERE tr.task_id = s.task_id AND tr.step_id = s.id AND tr.to_state = 'succeeded') AS succeeded,
		             s.attempts AS max_attempt
		      FROM tasker.steps AS s) AS x`).Scan(&steps, &bad, &reclaimed)
	if err != nil {
		t.Fatal(err)
	}
	if steps != tasks*stepsPer || bad != 0 {
		t.Errorf("%d steps, %d of them without exactly one succeeded transition", steps, bad)
	}
	var expired int
	if err := tb.pool.QueryRow(tb.ctx, `SELECT count(*) FROM tasker.step_transitions WHERE reason = 'lease expired'`).
		Scan(&expired); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills; %d steps ran more than once; %d re-claims after an expired lease", kills, reclaimed, expired)
	if expired == 0 {
		t.Error("no kill caught a step in flight: the test did not exercise lease expiry")
	}

	// The survivors drain cleanly.
	for _, p := range procs {
		p.signal(t, os.Interrupt)
	}
	for _, p := range procs {
		if !p.wait(10*time.Second) || p.err != nil {
			t.Errorf("worker %s: exited %v, err %v", p.name, p.cmd.ProcessState != nil, p.err)
		}
	}
}
