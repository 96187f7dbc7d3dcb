package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/queuescope"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

func step(name, handler string, deps ...string) taskerv1alpha1.StepSpec {
	return taskerv1alpha1.StepSpec{Name: name, Handler: handler, DependsOn: deps}
}

func withInputs(s taskerv1alpha1.StepSpec, inputs string) taskerv1alpha1.StepSpec {
	s.Inputs = &apiextensionsv1.JSON{Raw: []byte(inputs)}
	return s
}

func newTask(ns, name string, steps ...taskerv1alpha1.StepSpec) *taskerv1alpha1.Task {
	return &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       taskerv1alpha1.TaskSpec{Steps: steps},
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
}

// loadSample reads one object from config/samples.
func loadSample(t *testing.T, file string, into client.Object) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatal(err)
	}
}

// TestSamplesSucceed runs the sample Tasks (linear, diamond with a step that fails once, template-based, with a
// delayed step).
func TestSamplesSucceed(t *testing.T) {
	ns := newNamespace(t)
	startWorkers(t, 2, ns, "default")

	var tmpl taskerv1alpha1.TaskTemplate
	loadSample(t, "tasker_v1alpha1_tasktemplate_report.yaml", &tmpl)
	tmpl.Namespace = ns
	create(t, &tmpl)

	samples := []struct {
		file           string
		steps          int32
		retriedStep    string
		wantStepFields bool
		// delayed waits at least delay after its first dependency finished.
		delayed, after string
		delay          time.Duration
		// omitted is the step whose condition is false: it does not run; the others succeed.
		omitted string
		// outputs is status.outputs once the Task has succeeded; child the template a step named "report" ran.
		outputs, child string
	}{
		{file: "tasker_v1alpha1_task_linear.yaml", steps: 3, wantStepFields: true},
		{file: "tasker_v1alpha1_task_order_fulfillment.yaml", steps: 4, retriedStep: "charge-payment", wantStepFields: true},
		{file: "tasker_v1alpha1_task_from_template.yaml", steps: 3, wantStepFields: true},
		{file: "tasker_v1alpha1_task_delayed.yaml", steps: 3, wantStepFields: true, delayed: "send-reminder",
			after: "confirm-order", delay: 3 * time.Second},
		{file: "tasker_v1alpha1_task_conditional.yaml", steps: 5, wantStepFields: true, omitted: "explain-refusal"},
		{file: "tasker_v1alpha1_task_map.yaml", steps: 4, wantStepFields: true},
		{file: "tasker_v1alpha1_task_concurrency.yaml", steps: 2, wantStepFields: true},
		// A child workflow's steps are the Task's too (3 + the template's 3); a map's instances are not (2).
		{file: "tasker_v1alpha1_task_child.yaml", steps: 6, wantStepFields: true, outputs: `{"region":"eu"}`,
			child: "nightly-report"},
		{file: "tasker_v1alpha1_task_map_child.yaml", steps: 2, wantStepFields: true},
	}
	for _, s := range samples {
		var tk taskerv1alpha1.Task
		loadSample(t, s.file, &tk)
		tk.Namespace = ns
		create(t, &tk)
	}
	for _, s := range samples {
		t.Run(s.file, func(t *testing.T) {
			var tk taskerv1alpha1.Task
			loadSample(t, s.file, &tk)
			got := waitPhase(t, ns, tk.Name, taskerv1alpha1.TaskSucceeded, 60*time.Second)
			st := got.Status
			omitted := int32(0)
			if s.omitted != "" {
				omitted = 1
			}
			if st.StepCounts.Total != s.steps || st.StepCounts.Succeeded != s.steps-omitted || st.StepCounts.Omitted != omitted ||
				st.Progress != fmt.Sprintf("%d/%d", s.steps, s.steps) {
				t.Errorf("counts %+v progress %q, want %d succeeded, %d omitted", st.StepCounts, st.Progress, s.steps-omitted, omitted)
			}
			for _, sum := range st.Steps {
				if want := sum.Name == s.omitted; want != (sum.State == "omitted") || want && sum.Attempts != 0 {
					t.Errorf("step %s: %s after %d attempts", sum.Name, sum.State, sum.Attempts)
				}
			}
			if len(st.Steps) != int(s.steps) || st.TaskID == 0 || st.StartedAt == nil || st.CompletedAt == nil {
				t.Errorf("status incomplete: %+v", st)
			}
			if st.ObservedGeneration != got.Generation {
				t.Errorf("observedGeneration %d, generation %d", st.ObservedGeneration, got.Generation)
			}
			for _, c := range st.Conditions {
				if c.ObservedGeneration != got.Generation {
					t.Errorf("condition %s has observedGeneration %d", c.Type, c.ObservedGeneration)
				}
			}
			if c := condition(got, taskerv1alpha1.TaskConditionSucceeded); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("Succeeded condition: %+v", c)
			}
			if c := condition(got, taskerv1alpha1.TaskConditionReady); c == nil || c.Status != metav1.ConditionTrue ||
				c.Reason != "Succeeded" {
				t.Errorf("Ready condition: %+v", c)
			}
			if c := condition(got, taskerv1alpha1.TaskConditionStalled); c != nil {
				t.Errorf("Stalled condition on a Task that never failed: %+v", c)
			}
			if c := condition(got, taskerv1alpha1.TaskConditionAdmitted); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("Admitted condition: %+v", c)
			}
			if s.delayed != "" {
				times := map[string]*metav1.Time{}
				for _, sum := range st.Steps {
					times[sum.Name+".started"], times[sum.Name+".finished"] = sum.StartedAt, sum.FinishedAt
				}
				started, finished := times[s.delayed+".started"], times[s.after+".finished"]
				// Status times are whole seconds: allow one.
				if started == nil || finished == nil || started.Sub(finished.Time) < s.delay-time.Second {
					t.Errorf("%s started at %v, %s finished at %v: want at least %s between", s.delayed, started,
						s.after, finished, s.delay)
				}
			}
			if s.outputs != "" && (st.Outputs == nil || string(st.Outputs.Raw) != s.outputs) {
				t.Errorf("status.outputs %v, want %s", st.Outputs, s.outputs)
			}
			for _, sum := range st.Steps {
				if sum.Name == "report" && s.child != "" && (sum.Child == nil || sum.Child.Template != s.child ||
					sum.Child.Steps.Succeeded != 3) {
					t.Errorf("step report's child: %+v, want %s's 3 steps succeeded", sum.Child, s.child)
				}
			}
			if s.retriedStep != "" {
				for _, sum := range st.Steps {
					if sum.Name == s.retriedStep && sum.Attempts != 2 {
						t.Errorf("step %s: %d attempts, want 2 (fails once, then succeeds)", sum.Name, sum.Attempts)
					}
				}
			}
			waitFor(t, 10*time.Second, "Admitted and Succeeded events", func() (bool, error) {
				evs := events(t, ns, tk.Name)
				return hasEvent(evs, "Admitted", "admitted") && hasEvent(evs, "Succeeded", "steps done"), fmt.Errorf("%d events", len(evs))
			})
		})
	}
	// The template reports its users: the Task made from it, and the two that run it as a child workflow.
	waitFor(t, 10*time.Second, "template status", func() (bool, error) {
		var cur taskerv1alpha1.TaskTemplate
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(&tmpl), &cur); err != nil {
			return false, err
		}
		ready := len(cur.Status.Conditions) == 1 && cur.Status.Conditions[0].Status == metav1.ConditionTrue
		return ready && cur.Status.UsedBy == 3 && cur.Status.Steps == 3, fmt.Errorf("%+v", cur.Status)
	})
}

// TestTemplateSnapshotAndMissingTemplate: a Task waits for a missing template with a clear condition, is
// admitted when it appears, and keeps the steps it was admitted with when the template changes later.
func TestTemplateSnapshotAndMissingTemplate(t *testing.T) {
	ns := newNamespace(t)
	tk := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-later-template"},
		Spec:       taskerv1alpha1.TaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: "later"}},
	}
	create(t, tk)
	waitFor(t, 10*time.Second, "TemplateNotFound condition", func() (bool, error) {
		cur := getTask(t, ns, tk.Name)
		c := condition(cur, taskerv1alpha1.TaskConditionAdmitted)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == controllers.ReasonTemplateNotFound &&
			strings.Contains(c.Message, `TaskTemplate "later" not found`), fmt.Errorf("%v", cur.Status.Conditions)
	})
	tmpl := &taskerv1alpha1.TaskTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"},
		Spec:       taskerv1alpha1.TaskTemplateSpec{Steps: []taskerv1alpha1.StepSpec{step("one", "echo"), step("two", "echo", "one")}},
	}
	create(t, tmpl)
	waitFor(t, 10*time.Second, "admission after the template appeared", func() (bool, error) {
		cur := getTask(t, ns, tk.Name)
		return cur.Status.TaskID != 0, fmt.Errorf("%v", cur.Status.Conditions)
	})
	// Edit the template: the admitted Task keeps two steps.
	var cur taskerv1alpha1.TaskTemplate
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(tmpl), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Steps = append(cur.Spec.Steps, step("three", "echo", "two"))
	if err := env.Client.Update(context.Background(), &cur); err != nil {
		t.Fatal(err)
	}
	startWorkers(t, 1, ns, "default")
	done := waitPhase(t, ns, tk.Name, taskerv1alpha1.TaskSucceeded, 30*time.Second)
	if done.Status.StepCounts.Total != 2 {
		t.Fatalf("admitted Task changed with its template: %d steps", done.Status.StepCounts.Total)
	}
}

// TestPermanentFailure: a step failing permanently fails the Task, with the message in status and an Event.
func TestPermanentFailure(t *testing.T) {
	ns := newNamespace(t)
	startWorkers(t, 1, ns, "default")
	tk := newTask(ns, "doomed",
		step("prepare", "echo"),
		withInputs(step("charge", "fail", "prepare"), `{"permanent":true,"message":"card declined by issuer"}`),
		step("ship", "echo", "charge"))
	create(t, tk)
	got := waitPhase(t, ns, "doomed", taskerv1alpha1.TaskFailed, 30*time.Second)
	var charge *taskerv1alpha1.StepSummary
	for i := range got.Status.Steps {
		if got.Status.Steps[i].Name == "charge" {
			charge = &got.Status.Steps[i]
		}
	}
	if charge == nil || charge.State != "failed" || !strings.Contains(charge.Message, "card declined by issuer") {
		t.Fatalf("charge summary: %+v", charge)
	}
	if c := condition(got, taskerv1alpha1.TaskConditionFailed); c == nil || !strings.Contains(c.Message, "card declined by issuer") {
		t.Fatalf("Failed condition: %+v", c)
	}
	// kstatus reads a failed Task as failed (Stalled), not as in progress.
	if c := condition(got, taskerv1alpha1.TaskConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Failed" {
		t.Errorf("Ready condition of a failed Task: %+v", c)
	}
	if c := condition(got, taskerv1alpha1.TaskConditionStalled); c == nil || c.Status != metav1.ConditionTrue ||
		!strings.Contains(c.Message, "card declined by issuer") {
		t.Errorf("Stalled condition of a failed Task: %+v", c)
	}
	if got.Status.StepCounts.Skipped != 1 {
		t.Errorf("the step below the failure should be skipped: %+v", got.Status.StepCounts)
	}
	waitFor(t, 10*time.Second, "StepFailed event", func() (bool, error) {
		evs := events(t, ns, "doomed")
		return hasEvent(evs, "StepFailed", "card declined by issuer") && hasEvent(evs, "Failed", "charge"), fmt.Errorf("%d events", len(evs))
	})
}

// TestManyTasksFewStatusWrites: 200 Tasks at once all succeed, with few status writes each.
func TestManyTasksFewStatusWrites(t *testing.T) {
	ns := newNamespace(t)
	const n = 200
	before := testutil.ToFloat64(controllers.StatusWrites())
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := newTask(ns, fmt.Sprintf("burst-%03d", i),
				step("a", "echo"), step("b", "echo", "a"), step("c", "echo", "a"), step("d", "echo", "b", "c"), step("e", "echo", "d"))
			if err := env.Client.Create(context.Background(), tk); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	startWorkers(t, 4, ns, "default")
	waitFor(t, 3*time.Minute, "200 Tasks to succeed", func() (bool, error) {
		var list taskerv1alpha1.TaskList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		done := 0
		for _, tk := range list.Items {
			if tk.Status.Phase == taskerv1alpha1.TaskSucceeded && tk.Status.StepCounts.Succeeded == 5 {
				done++
			}
		}
		return done == n, fmt.Errorf("%d of %d succeeded", done, n)
	})
	writes := testutil.ToFloat64(controllers.StatusWrites()) - before
	perTask := writes / n
	t.Logf("status writes: %.0f for %d Tasks (%.2f per Task)", writes, n, perTask)
	if perTask > 3 {
		t.Fatalf("%.2f status writes per Task, want at most 3", perTask)
	}
}

// TestLargeTaskStatusIsBounded: a 1,000-step Task's status stays under 64 KiB.
func TestLargeTaskStatusIsBounded(t *testing.T) {
	ns := newNamespace(t)
	steps := make([]taskerv1alpha1.StepSpec, taskerv1alpha1.MaxSteps)
	for i := range steps {
		steps[i] = withInputs(step(fmt.Sprintf("s%04d", i), "fail"),
			fmt.Sprintf(`{"permanent":true,"message":%q}`, strings.Repeat("a long error message ", 40)))
		steps[i].Retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(1))}
	}
	tk := newTask(ns, "huge", steps...)
	create(t, tk)
	startWorkers(t, 2, ns, "default")
	got := waitPhase(t, ns, "huge", taskerv1alpha1.TaskFailed, 60*time.Second)
	raw, err := json.Marshal(got.Status)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 64*1024 {
		t.Fatalf("status is %d bytes, want at most 64 KiB", len(raw))
	}
	if len(got.Status.Steps) != taskerv1alpha1.MaxStepSummaries || got.Status.StepCounts.Total != 1000 {
		t.Fatalf("summaries %d, total %d", len(got.Status.Steps), got.Status.StepCounts.Total)
	}
	t.Logf("status of a 1,000-step Task: %d bytes", len(raw))
}

// stepRows returns the database state of a Task's steps: name -> (state, attempts).
func stepRows(t *testing.T, taskID int64) map[string][2]string {
	t.Helper()
	rows, err := dbPool.Query(context.Background(), `SELECT name, state, attempts::text FROM tasker.steps WHERE task_id = $1`, taskID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var name, state, attempts string
		if err := rows.Scan(&name, &state, &attempts); err != nil {
			t.Fatal(err)
		}
		out[name] = [2]string{state, attempts}
	}
	return out
}

// queueLength counts the messages of namespace ns's queue.
func queueLength(t *testing.T, ns, queue string) int64 {
	t.Helper()
	var n int64
	if err := dbPool.QueryRow(context.Background(), `SELECT queue_length FROM pgmq.metrics($1::text)`,
		queuescope.Namespaced(ns, queue)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeleteMidRunCancels: deleting a running Task cancels it in the database before the finalizer goes.
func TestDeleteMidRunCancels(t *testing.T) {
	ns := newNamespace(t)
	const queue = "delete_mid_run"
	tk := newTask(ns, "to-delete", step("first", "echo"), withInputs(step("slow", "sleep", "first"), `{"seconds":30}`),
		step("after", "echo", "slow"), step("other", "echo"))
	tk.Spec.Queue = queue
	create(t, tk)
	startWorkers(t, 2, ns, queue)
	waitFor(t, 20*time.Second, "the slow step to run", func() (bool, error) {
		cur := getTask(t, ns, tk.Name)
		return cur.Status.StepCounts.Running == 1, fmt.Errorf("%+v", cur.Status.StepCounts)
	})
	taskID := getTask(t, ns, tk.Name).Status.TaskID
	if err := env.Client.Delete(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the Task to be gone", func() (bool, error) {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(tk), &taskerv1alpha1.Task{})
		return isNotFound(err), err
	})
	rows := stepRows(t, taskID)
	for _, name := range []string{"slow", "after"} {
		if rows[name][0] != "cancelled" {
			t.Errorf("step %s is %s, want cancelled", name, rows[name][0])
		}
	}
	if n := queueLength(t, ns, queue); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

// TestCancelViaSpec: spec.cancel stops a Task.
func TestCancelViaSpec(t *testing.T) {
	ns := newNamespace(t)
	const queue = "cancel_spec"
	tk := newTask(ns, "to-cancel", withInputs(step("slow", "sleep"), `{"seconds":30}`), step("after", "echo", "slow"))
	tk.Spec.Queue = queue
	create(t, tk)
	startWorkers(t, 1, ns, queue)
	waitFor(t, 20*time.Second, "the slow step to run", func() (bool, error) {
		cur := getTask(t, ns, tk.Name)
		return cur.Status.StepCounts.Running == 1, fmt.Errorf("%+v", cur.Status.StepCounts)
	})
	cur := getTask(t, ns, tk.Name)
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Cancel = true
	if err := env.Client.Patch(context.Background(), cur, patch); err != nil {
		t.Fatal(err)
	}
	got := waitPhase(t, ns, tk.Name, taskerv1alpha1.TaskCancelled, 20*time.Second)
	if got.Status.StepCounts.Cancelled != 2 {
		t.Errorf("counts %+v, want both steps cancelled", got.Status.StepCounts)
	}
	if n := queueLength(t, ns, queue); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
	waitFor(t, 10*time.Second, "Cancelled event", func() (bool, error) {
		return hasEvent(events(t, ns, tk.Name), "Cancelled", "cancelled"), nil
	})
}

// TestRetryViaAction: a failed step retried through spec.actions resumes the Task to success, once per id.
func TestRetryViaAction(t *testing.T) {
	ns := newNamespace(t)
	const queue = "retry_action"
	// "flaky" fails permanently on its first attempt only (fail handler: failTimes counts retryable failures,
	// so use maxAttempts 1 to make the first failure final).
	flaky := withInputs(step("flaky", "fail", "first"), `{"failTimes":1}`)
	flaky.Retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(1))}
	tk := newTask(ns, "retry-me", step("first", "echo"), flaky, step("last", "echo", "flaky"))
	tk.Spec.Queue = queue
	create(t, tk)
	startWorkers(t, 1, ns, queue)
	failed := waitPhase(t, ns, tk.Name, taskerv1alpha1.TaskFailed, 30*time.Second)

	apply := func() {
		t.Helper()
		cur := getTask(t, ns, tk.Name)
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Actions = []taskerv1alpha1.TaskAction{{ID: "retry-1", Type: taskerv1alpha1.ActionRetry, Step: "flaky"}}
		if err := env.Client.Patch(context.Background(), cur, patch); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	got := waitPhase(t, ns, tk.Name, taskerv1alpha1.TaskSucceeded, 30*time.Second)
	if len(got.Status.Actions) != 1 || got.Status.Actions[0].ID != "retry-1" || got.Status.Actions[0].Outcome != "Done" {
		t.Fatalf("status.actions %+v", got.Status.Actions)
	}
	// Applying the same manifest again (same action id) retries nothing.
	apply()
	time.Sleep(2 * time.Second)
	after := getTask(t, ns, tk.Name)
	if after.Status.Phase != taskerv1alpha1.TaskSucceeded || len(after.Status.Actions) != 1 {
		t.Fatalf("re-applied action changed the Task: %+v", after.Status)
	}
	var retries int
	if err := dbPool.QueryRow(context.Background(), `SELECT count(*) FROM tasker.step_transitions tr JOIN tasker.steps s ON s.id = tr.step_id
		WHERE s.task_id = $1 AND s.name = 'flaky' AND tr.from_state = 'failed'`, failed.Status.TaskID).Scan(&retries); err != nil {
		t.Fatal(err)
	}
	if retries != 1 {
		t.Fatalf("flaky left the failed state %d times, want exactly 1", retries)
	}
}

// TestResolveAndCompleteViaActions: resolve and complete a failed step by hand.
func TestResolveAndCompleteViaActions(t *testing.T) {
	ns := newNamespace(t)
	const queue = "manual_actions"
	startWorkers(t, 1, ns, queue)
	for _, typ := range []taskerv1alpha1.TaskActionType{taskerv1alpha1.ActionResolve, taskerv1alpha1.ActionComplete} {
		name := "manual-" + strings.ToLower(string(typ))
		tk := newTask(ns, name, withInputs(step("broken", "fail"), `{"permanent":true}`), step("next", "echo", "broken"))
		tk.Spec.Queue = queue
		create(t, tk)
		waitPhase(t, ns, name, taskerv1alpha1.TaskFailed, 30*time.Second)
		cur := getTask(t, ns, name)
		patch := client.MergeFrom(cur.DeepCopy())
		action := taskerv1alpha1.TaskAction{ID: "a1", Type: typ, Step: "broken", Reason: "fixed by hand"}
		if typ == taskerv1alpha1.ActionComplete {
			action.Result = &apiextensionsv1.JSON{Raw: []byte(`{"manual":true}`)}
		}
		cur.Spec.Actions = []taskerv1alpha1.TaskAction{action}
		if err := env.Client.Patch(context.Background(), cur, patch); err != nil {
			t.Fatal(err)
		}
		got := waitPhase(t, ns, name, taskerv1alpha1.TaskSucceeded, 30*time.Second)
		wantState := map[taskerv1alpha1.TaskActionType]string{taskerv1alpha1.ActionResolve: "resolved", taskerv1alpha1.ActionComplete: "succeeded"}[typ]
		if got.Status.Steps[0].State != wantState {
			t.Errorf("%s: broken step is %s, want %s", typ, got.Status.Steps[0].State, wantState)
		}
	}
}

// TestTTLDeletesFinishedTasks: ttlSecondsAfterFinished removes a finished Task.
func TestTTLDeletesFinishedTasks(t *testing.T) {
	ns := newNamespace(t)
	const queue = "ttl"
	tk := newTask(ns, "short-lived", step("only", "echo"))
	tk.Spec.Queue = queue
	tk.Spec.TTLSecondsAfterFinished = ptr.To(int32(1))
	create(t, tk)
	startWorkers(t, 1, ns, queue)
	waitFor(t, 30*time.Second, "the Task to be deleted after its TTL", func() (bool, error) {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(tk), &taskerv1alpha1.Task{})
		return isNotFound(err), err
	})
}

// TestStatusTaskIDIsNotTrusted: whoever may write tasks/status in one namespace cannot reach another namespace's
// workflow by pointing status.taskID at it. The controller finds a Task's engine task by its UID, corrects the
// status, and acts on its own task only (issue 13).
func TestStatusTaskIDIsNotTrusted(t *testing.T) {
	nsA, nsB := newNamespace(t), newNamespace(t)
	a := newTask(nsA, "intruder", step("s", "echo"))
	a.Spec.Queue = "tenancy_a" // no workers: both Tasks wait
	b := newTask(nsB, "victim", step("s", "echo"))
	b.Spec.Queue = "tenancy_b"
	create(t, a)
	create(t, b)
	var idA, idB int64
	waitFor(t, 20*time.Second, "both Tasks admitted", func() (bool, error) {
		idA, idB = getTask(t, nsA, a.Name).Status.TaskID, getTask(t, nsB, b.Name).Status.TaskID
		return idA != 0 && idB != 0, fmt.Errorf("task ids %d, %d", idA, idB)
	})

	// The intruder's status now names the victim's engine task; then it cancels "itself".
	cur := getTask(t, nsA, a.Name)
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Status.TaskID = idB
	if err := env.Client.Status().Patch(context.Background(), cur, patch); err != nil {
		t.Fatal(err)
	}
	cur = getTask(t, nsA, a.Name)
	patch = client.MergeFrom(cur.DeepCopy())
	cur.Spec.Cancel = true
	if err := env.Client.Patch(context.Background(), cur, patch); err != nil {
		t.Fatal(err)
	}
	got := waitPhase(t, nsA, a.Name, taskerv1alpha1.TaskCancelled, 20*time.Second)
	if got.Status.TaskID != idA {
		t.Errorf("intruder's status.taskID = %d, want its own %d (corrected)", got.Status.TaskID, idA)
	}
	st, err := engine.New(dbPool, engine.Options{}).GetTask(ctxFor(t, 10*time.Second), idB)
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != engine.TaskPending {
		t.Errorf("victim's engine task is %s, want it untouched (pending)", st.Phase)
	}
	if p := getTask(t, nsB, b.Name).Status.Phase; p == taskerv1alpha1.TaskCancelled {
		t.Errorf("victim's Task is %s", p)
	}
}

// TestStepDefaultsReachTheEngine: a Task created with bare steps reads back with the CRD schema's defaults, and
// the engine admits exactly those values (plus the backoff max the operator derives from the base), for inline
// steps and a template's alike.
func TestStepDefaultsReachTheEngine(t *testing.T) {
	ns := newNamespace(t)
	steps := []taskerv1alpha1.StepSpec{step("bare", "echo"), step("slow-base", "echo"), step("tuned", "echo")}
	steps[1].Retry = &taskerv1alpha1.RetryPolicy{Backoff: &taskerv1alpha1.Backoff{Base: &metav1.Duration{Duration: 10 * time.Minute}}}
	steps[2].TimeoutSeconds = ptr.To(int32(30))
	steps[2].Retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(1)), Backoff: &taskerv1alpha1.Backoff{
		Max: &metav1.Duration{Duration: time.Minute}, JitterPercent: ptr.To(int32(0))}}
	tmpl := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaults"},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: steps}}
	create(t, tmpl)
	inline := newTask(ns, "inline", steps...)
	inline.Spec.Queue = "no_workers" // the steps stay enqueued
	fromTemplate := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-template"},
		Spec: taskerv1alpha1.TaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: "defaults"}, Queue: "no_workers"}}
	create(t, inline)
	create(t, fromTemplate)

	read := getTask(t, ns, "inline").Spec.Steps[0]
	if r := read.Retry; read.TimeoutSeconds == nil || *read.TimeoutSeconds != 3600 || r == nil || r.MaxAttempts == nil ||
		*r.MaxAttempts != 3 || r.Backoff == nil || r.Backoff.Base == nil || r.Backoff.Base.Duration != time.Second ||
		r.Backoff.JitterPercent == nil || *r.Backoff.JitterPercent != 20 || r.Backoff.Max != nil {
		t.Errorf("a bare step read back without the schema's defaults: %s", mustJSON(t, read))
	}

	// name -> max_attempts, backoff_base_ms, backoff_max_ms, backoff_jitter, timeout_seconds
	want := map[string]string{
		"bare":      "3 1000 300000 0.2 3600",
		"slow-base": "3 600000 600000 0.2 3600",
		"tuned":     "1 1000 60000 0 30",
	}
	for _, name := range []string{"inline", "from-template"} {
		var id int64
		waitFor(t, 20*time.Second, name+" admitted", func() (bool, error) {
			id = getTask(t, ns, name).Status.TaskID
			return id != 0, fmt.Errorf("%v", getTask(t, ns, name).Status.Conditions)
		})
		rows, err := dbPool.Query(context.Background(), `SELECT name, format('%s %s %s %s %s', max_attempts, backoff_base_ms,
			backoff_max_ms, backoff_jitter, timeout_seconds) FROM tasker.steps WHERE task_id = $1`, id)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rows.Next() {
			var step, policy string
			if err := rows.Scan(&step, &policy); err != nil {
				t.Fatal(err)
			}
			got[step] = policy
		}
		rows.Close()
		if !maps.Equal(got, want) {
			t.Errorf("%s: the engine's steps have %v, want %v", name, got, want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The webhook checks a step's condition with the database's own SQL/JSON path parser: kubectl apply is refused
// with the field named.
func TestBadConditionIsRefusedAtApply(t *testing.T) {
	ns := newNamespace(t)
	for when, want := range map[string]string{
		`$.deps.first`: "must be a predicate",
		`$.deps.(`:     "not a SQL/JSON path expression",
	} {
		s := step("second", "echo", "first")
		s.When = when
		err := env.Client.Create(context.Background(), newTask(ns, "bad-when", step("first", "echo"), s))
		if err == nil || !strings.Contains(err.Error(), "spec.steps[1].when") || !strings.Contains(err.Error(), want) {
			t.Errorf("when %q: %v, want spec.steps[1].when: %s", when, err, want)
		}
	}
}

// An approval workflow through the apiserver: the gate waits (no worker holds it), a Signal action added with a
// patch, as kubectl patch or GitOps would, lets it continue with the payload as its result.
func TestApprovalWorkflow(t *testing.T) {
	ns := newNamespace(t)
	startWorkers(t, 1, ns, "default")
	var tk taskerv1alpha1.Task
	loadSample(t, "tasker_v1alpha1_task_approval.yaml", &tk)
	tk.Namespace = ns
	create(t, &tk)
	waitFor(t, 30*time.Second, "the approval step to wait", func() (bool, error) {
		cur := getTask(t, ns, tk.Name)
		for _, s := range cur.Status.Steps {
			if s.Name == "approval" {
				return s.State == "waiting" && s.NextAttemptAt != nil && cur.Status.StepCounts.Waiting == 1,
					fmt.Errorf("approval %s, counts %+v", s.State, cur.Status.StepCounts)
			}
		}
		return false, fmt.Errorf("no approval step in the status yet")
	})
	patch := client.RawPatch(types.MergePatchType, []byte(
		`{"spec":{"actions":[{"id":"approve-1","type":"Signal","signal":"approved","result":{"by":"alice"}}]}}`))
	if err := env.Client.Patch(context.Background(), &tk, patch); err != nil {
		t.Fatal(err)
	}
	got := waitPhase(t, ns, tk.Name, taskerv1alpha1.TaskSucceeded, 30*time.Second)
	if len(got.Status.Actions) != 1 || got.Status.Actions[0].Outcome != "Done" {
		t.Errorf("action records %+v", got.Status.Actions)
	}
	st, err := engine.New(dbPool, engine.Options{}).GetTask(context.Background(), got.Status.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if r := string(st.Step("approval").Result); r != `{"by": "alice"}` {
		t.Errorf("approval's result %s, want the signal's payload", r)
	}
	// A Signal action must name a signal and no step (CEL).
	bad := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"actions":[{"id":"x","type":"Signal","step":"approval"}]}}`))
	if err := env.Client.Patch(context.Background(), &tk, bad); err == nil || !strings.Contains(err.Error(), "a Signal action names a signal") {
		t.Errorf("a Signal action naming a step: %v", err)
	}
}

// A map over 500 items through the apiserver: the instances run on four claim loops, the reducer receives their
// 500 results in order, and the status shows the map as one step with counts (not 500 summaries); a map path that
// is not an array is refused when the Task is applied, naming the field.
func TestMapOverFiveHundredItems(t *testing.T) {
	ns := newNamespace(t)
	startWorkers(t, 4, ns, "default")
	items := make([]string, 500)
	for i := range items {
		items[i] = fmt.Sprintf(`"item-%03d"`, i)
	}
	tk := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: "map-500", Namespace: ns},
		Spec: taskerv1alpha1.TaskSpec{Queue: "default", Steps: []taskerv1alpha1.StepSpec{
			{Name: "list", Handler: "echo", Inputs: &apiextensionsv1.JSON{Raw: []byte(`{"items":[` + strings.Join(items, ",") + `]}`)}},
			{Name: "each", Handler: "echo", DependsOn: []string{"list"}, ForEach: "$.deps.list.items"},
			{Name: "reduce", Handler: "join", DependsOn: []string{"each"}},
		}},
	}
	create(t, tk)
	got := waitPhase(t, ns, tk.Name, taskerv1alpha1.TaskSucceeded, 120*time.Second)
	want := taskerv1alpha1.StepCounts{Total: 500, Succeeded: 500}
	if c := got.Status.StepCounts; c.Total != 3 || c.Succeeded != 3 || len(got.Status.Steps) != 3 || got.Status.Progress != "3/3" {
		t.Errorf("status counts %+v, %d summaries, progress %s", c, len(got.Status.Steps), got.Status.Progress)
	}
	if m := got.Status.Steps[1].Map; got.Status.Steps[1].Name != "each" || m == nil || *m != want {
		t.Errorf("the map's summary: %+v", got.Status.Steps[1])
	}
	st, err := engine.New(dbPool, engine.Options{}).GetTask(context.Background(), got.Status.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	var reduced struct {
		Each []string `json:"each"`
	}
	if err := json.Unmarshal(st.Step("reduce").Result, &reduced); err != nil {
		t.Fatal(err)
	}
	if len(reduced.Each) != 500 {
		t.Fatalf("the reducer received %d results", len(reduced.Each))
	}
	for i, r := range reduced.Each {
		if r != fmt.Sprintf("item-%03d", i) {
			t.Fatalf("result %d is %q: not in order", i, r)
		}
	}
	bad := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-map", Namespace: ns},
		Spec: taskerv1alpha1.TaskSpec{Queue: "default", Steps: []taskerv1alpha1.StepSpec{
			{Name: "each", Handler: "echo", ForEach: "$.context.n > 1"},
		}},
	}
	err = env.Client.Create(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "spec.steps[0].forEach") || !strings.Contains(err.Error(), "not a predicate") {
		t.Errorf("a predicate as forEach: %v", err)
	}
}

// Template parameters and versions through the apiserver: bad arguments are refused when the Task is applied,
// naming the argument; good ones reach the steps under params; a Task records the template generation and hash it
// was admitted from; a Task pinning a later generation waits for it and is admitted from it.
func TestTemplateParametersAndVersions(t *testing.T) {
	ns := newNamespace(t)
	startWorkers(t, 1, ns, "default")
	tmpl := &taskerv1alpha1.TaskTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "report"},
		Spec: taskerv1alpha1.TaskTemplateSpec{
			Parameters: []taskerv1alpha1.TemplateParameter{
				{Name: "region", Type: taskerv1alpha1.ParameterString, Required: true, Enum: []apiextensionsv1.JSON{{Raw: []byte(`"eu"`)}, {Raw: []byte(`"us"`)}}},
				{Name: "days", Type: taskerv1alpha1.ParameterInteger, Default: &apiextensionsv1.JSON{Raw: []byte(`1`)}},
			},
			Steps: []taskerv1alpha1.StepSpec{step("one", "echo")},
		},
	}
	create(t, tmpl)
	// A template whose default does not fit its type is refused too.
	badTmpl := tmpl.DeepCopy()
	badTmpl.ResourceVersion, badTmpl.Name = "", "bad-report"
	badTmpl.Spec.Parameters[1].Default = &apiextensionsv1.JSON{Raw: []byte(`"1"`)}
	if err := env.Client.Create(context.Background(), badTmpl); err == nil || !strings.Contains(err.Error(), "spec.parameters[1].default") ||
		!strings.Contains(err.Error(), "must be an integer") {
		t.Errorf("a default of the wrong type: %v", err)
	}

	fromTemplate := func(name, args string, pin int64) *taskerv1alpha1.Task {
		tk := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: taskerv1alpha1.TaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: "report"},
				Arguments: &apiextensionsv1.JSON{Raw: []byte(args)}}}
		if pin != 0 {
			tk.Spec.TemplateRef.Generation = &pin
		}
		return tk
	}
	err := env.Client.Create(context.Background(), fromTemplate("bad", `{"region":"ap","weeks":2}`, 0))
	if err == nil || !strings.Contains(err.Error(), `spec.arguments[weeks]: Unsupported value: "weeks"`) ||
		!strings.Contains(err.Error(), `spec.arguments[region]: Invalid value: "\"ap\"": must be one of "eu", "us"`) {
		t.Errorf("bad arguments: %v", err)
	}
	if err := env.Client.Create(context.Background(), fromTemplate("missing", `{}`, 0)); err == nil ||
		!strings.Contains(err.Error(), `spec.arguments[region]: Required value`) {
		t.Errorf("a missing required argument: %v", err)
	}

	create(t, fromTemplate("eu", `{"region":"eu"}`, 0))
	create(t, fromTemplate("pinned", `{"region":"us","days":3}`, 2))
	got := waitPhase(t, ns, "eu", taskerv1alpha1.TaskSucceeded, 30*time.Second)
	first := got.Status.Template
	if first == nil || first.Name != "report" || first.Generation != 1 || !strings.HasPrefix(first.Hash, "sha256:") {
		t.Fatalf("status.template %+v", first)
	}
	st, err := engine.New(dbPool, engine.Options{}).GetTask(context.Background(), got.Status.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if string(st.Context) != `{"params": {"days": 1, "region": "eu"}}` {
		t.Errorf("the steps' context %s", st.Context)
	}
	waitFor(t, 10*time.Second, "the pinned Task to wait for generation 2", func() (bool, error) {
		c := condition(getTask(t, ns, "pinned"), taskerv1alpha1.TaskConditionAdmitted)
		return c != nil && c.Reason == controllers.ReasonTemplateGeneration && strings.Contains(c.Message, "reaches it"),
			fmt.Errorf("%+v", c)
	})
	var cur taskerv1alpha1.TaskTemplate
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(tmpl), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Steps = append(cur.Spec.Steps, step("two", "echo", "one"))
	if err := env.Client.Update(context.Background(), &cur); err != nil {
		t.Fatal(err)
	}
	pinned := waitPhase(t, ns, "pinned", taskerv1alpha1.TaskSucceeded, 60*time.Second)
	if o := pinned.Status.Template; o == nil || o.Generation != 2 || o.Hash == first.Hash || pinned.Status.StepCounts.Total != 2 {
		t.Errorf("pinned Task: template %+v, %d steps", o, pinned.Status.StepCounts.Total)
	}
	// The first Task still records generation 1.
	if o := getTask(t, ns, "eu").Status.Template; o == nil || *o != *first {
		t.Errorf("the first Task's template changed: %+v", o)
	}
}

// GitOps-safe identity: a Task with an idempotency key, deleted by its TTL and applied again (as Argo CD's
// self-heal or Flux would), is bound to the run that finished: same engine task, its outcome in the status, and
// no step runs twice.
func TestIdempotencyKeySurvivesTTLAndReapply(t *testing.T) {
	ns := newNamespace(t)
	const queue = "gitops"
	manifest := func() *taskerv1alpha1.Task {
		tk := newTask(ns, "nightly", step("only", "echo"))
		tk.Spec.Queue = queue
		tk.Spec.IdempotencyKey = "nightly-2026-12-06"
		tk.Spec.TTLSecondsAfterFinished = ptr.To(int32(1))
		return tk
	}
	startWorkers(t, 1, ns, queue)
	first := manifest()
	create(t, first)
	done := waitPhase(t, ns, first.Name, taskerv1alpha1.TaskSucceeded, 30*time.Second)
	runID := done.Status.TaskID
	waitFor(t, 30*time.Second, "the TTL to delete the Task", func() (bool, error) {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(first), &taskerv1alpha1.Task{})
		return isNotFound(err), err
	})

	// The same manifest — but for its TTL, which would delete the bound Task at once (its run finished long ago),
	// before this test could read its status; a GitOps tool re-applying it with the TTL gets the same binding, and
	// then the same deletion, each time without running anything.
	again := manifest()
	again.Spec.TTLSecondsAfterFinished = nil
	create(t, again)
	got := waitPhase(t, ns, again.Name, taskerv1alpha1.TaskSucceeded, 30*time.Second)
	if got.UID == done.UID || got.Status.TaskID != runID {
		t.Errorf("re-applied Task: uid %s (first %s), task %d, want the first run %d", got.UID, done.UID, got.Status.TaskID, runID)
	}
	if c := condition(got, taskerv1alpha1.TaskConditionAdmitted); c == nil || !strings.Contains(c.Message, "bound to task") {
		t.Errorf("Admitted condition %+v", c)
	}
	var runs, attempts int
	if err := dbPool.QueryRow(context.Background(), `SELECT count(*), (SELECT sum(s.attempts) FROM tasker.steps AS s
		JOIN tasker.tasks AS t ON t.id = s.task_id WHERE t.namespace = $1 AND t.idempotency_key = $2)
		FROM tasker.tasks WHERE namespace = $1 AND idempotency_key = $2`, ns, "nightly-2026-12-06").Scan(&runs, &attempts); err != nil {
		t.Fatal(err)
	}
	if runs != 1 || attempts != 1 {
		t.Errorf("%d runs with the key, %d attempts in all: want the one run, its step run once", runs, attempts)
	}
}
