package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestAdmitIsIdempotent(t *testing.T) {
	b := setup(t)
	spec := engine.TaskSpec{ExternalKey: "uid-1", Namespace: "ns", Name: "t", Queue: "idem", Priority: 5,
		Context: json.RawMessage(`{"k": 1}`), Retention: time.Hour, Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", Inputs: json.RawMessage(`[1, 2]`), Timeout: 1500 * time.Millisecond},
			{Name: "b", Handler: "h", Queue: "idem_other", DependsOn: []string{"a"}},
		}}
	first, err := b.engine.Admit(b.ctx, spec)
	if err != nil || !first.Created {
		t.Fatalf("first admit = %+v, %v", first, err)
	}
	before := b.task(t, first.TaskID)

	// Same key, different spec: the first task is returned, nothing changes.
	spec2 := spec
	spec2.Steps = []engine.StepSpec{{Name: "other", Handler: "h"}}
	for _, s := range []engine.TaskSpec{spec, spec2} {
		again, err := b.engine.Admit(b.ctx, s)
		if err != nil || again.Created || again.TaskID != first.TaskID {
			t.Fatalf("second admit = %+v, %v", again, err)
		}
	}
	after := b.task(t, first.TaskID)
	if len(after.Steps) != 2 || !after.UpdatedAt.Equal(before.UpdatedAt) || b.queueLength(t, "idem") != 1 {
		t.Fatalf("second admission changed the task: %+v", after)
	}
	if after.Namespace != "ns" || after.Name != "t" || after.Priority != 5 || after.Retention != time.Hour ||
		string(after.Context) != `{"k": 1}` || after.Phase != engine.TaskPending {
		t.Errorf("task = %+v", after)
	}
	if s := after.Step("b"); s.Queue != "idem_other" || fmt.Sprint(s.DependsOn) != "[a]" || s.MaxAttempts != 3 {
		t.Errorf("step b = %+v", s)
	}
	byKey, err := b.engine.TaskByKey(b.ctx, "uid-1")
	if err != nil || byKey.ID != first.TaskID || len(byKey.Steps) != 2 {
		t.Fatalf("TaskByKey = %+v, %v", byKey, err)
	}
	if _, err := b.engine.TaskByKey(b.ctx, "nope"); !errors.Is(err, engine.ErrTaskNotFound) {
		t.Errorf("TaskByKey(nope) = %v", err)
	}
	c := b.claimOne(t, "idem", time.Minute, time.Second)
	if c.Timeout != 2*time.Second || string(c.Inputs) != `[1, 2]` || string(c.TaskContext) != `{"k": 1}` {
		t.Errorf("claimed = %+v", c)
	}
}

func TestConcurrentAdmissionsOfOneKey(t *testing.T) {
	b := setup(t)
	const n = 8
	var wg sync.WaitGroup
	results := make([]engine.Admission, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = b.engine.Admit(b.ctx, engine.TaskSpec{ExternalKey: "same", Queue: "newq",
				Steps: []engine.StepSpec{{Name: "s", Handler: "h"}}})
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("admit %d: %v", i, errs[i])
		}
		if results[i].TaskID != results[0].TaskID {
			t.Fatalf("different task ids: %+v", results)
		}
		if results[i].Created {
			created++
		}
	}
	if created != 1 || b.queueLength(t, "newq") != 1 {
		t.Fatalf("created %d times, %d messages", created, b.queueLength(t, "newq"))
	}
}

func TestAdmitValidation(t *testing.T) {
	b := setup(t)
	ok := engine.StepSpec{Name: "a", Handler: "h"}
	cases := []struct {
		name  string
		spec  engine.TaskSpec
		field string
	}{
		{"no key", engine.TaskSpec{Queue: "q", Steps: []engine.StepSpec{ok}}, "externalKey"},
		{"no steps", engine.TaskSpec{ExternalKey: "k", Queue: "q"}, "steps"},
		{"bad queue", engine.TaskSpec{ExternalKey: "k", Queue: "Q-1", Steps: []engine.StepSpec{ok}}, "queue"},
		{"no queue", engine.TaskSpec{ExternalKey: "k", Steps: []engine.StepSpec{ok}}, "steps[0].queue"},
		{"bad step queue", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", Queue: "a;b"}}}, "steps[0].queue"},
		{"bad name", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "A_1", Handler: "h"}}}, "steps[0].name"},
		{"duplicate", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{ok, ok}}, "steps[1].name"},
		{"unknown dep", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", DependsOn: []string{"zz"}}}}, "steps[0].dependsOn[0]"},
		{"cycle", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "r", Handler: "h"},
			{Name: "a", Handler: "h", DependsOn: []string{"b"}},
			{Name: "b", Handler: "h", DependsOn: []string{"a"}}}}, "dependency cycle"},
		{"no handler", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{{Name: "a"}}}, "steps[0].handler"},
		{"bad inputs", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", Inputs: json.RawMessage(`{`)}}}, "steps[0].inputs"},
		{"bad context", engine.TaskSpec{ExternalKey: "k", Queue: "q", Context: json.RawMessage(`nope`),
			Steps: []engine.StepSpec{ok}}, "context"},
		{"bad retry", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", Retry: engine.RetryPolicy{BackoffBase: time.Minute, BackoffMax: time.Second}}}},
			"steps[0].retry.backoff.max"},
		{"bad jitter", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", Retry: engine.RetryPolicy{Jitter: 2}}}}, "steps[0].retry.backoff.jitter"},
		{"negative timeout", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: []engine.StepSpec{
			{Name: "a", Handler: "h", Timeout: -time.Second}}}, "steps[0].timeoutSeconds"},
		{"too many steps", engine.TaskSpec{ExternalKey: "k", Queue: "q", Steps: make([]engine.StepSpec, 1001)}, "steps"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.engine.Admit(b.ctx, tc.spec)
			var se *engine.SpecError
			if !errors.Is(err, engine.ErrInvalidSpec) || !errors.As(err, &se) {
				t.Fatalf("Admit = %v, want a SpecError", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tasker.tasks`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d tasks written, %v", n, err)
	}
}

// tasker.admit itself rejects what SQL can check cheaply, for callers other than the Go engine.
func TestAdmitFunctionValidates(t *testing.T) {
	b := setup(t)
	for doc, want := range map[string]string{
		`{"external_key":"k","queue":"q","steps":[]}`:                                              "spec.steps: at least one step",
		`{"queue":"q","steps":[{"name":"a","handler":"h"}]}`:                                       "spec.external_key: required",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","depends_on":["x"]}]}`: "spec.steps[0].depends_on: unknown step 'x'",
		`{"external_key":"k","steps":[{"name":"a","handler":"h"}]}`:                                "spec.steps[0].queue: the step names no queue and the task has none (spec.queue)",
		// The document is strict (issue 13): unknown keys, with the key meant where it is a known one spelt
		// otherwise, and wrong types are refused with 22023 naming the field.
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h"},{"name":"b","handler":"h","dependsOn":["a"]}]}`: "spec.steps[1].dependsOn: unknown field (did you mean depends_on?)",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","max_attempt":5}]}`:                              "spec.steps[0].max_attempt: unknown field (did you mean max_attempts?)",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","timeout":5}]}`:                                  "spec.steps[0].timeout: unknown field (did you mean timeout_seconds?)",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","color":"red"}]}`:                                "spec.steps[0].color: unknown field (the fields are name, handler,",
		`{"externalKey":"k","queue":"q","steps":[{"name":"a","handler":"h"}]}`:                                               "spec.externalKey: unknown field (did you mean external_key?)",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","max_attempts":"5"}]}`:                           "spec.steps[0].max_attempts: must be a number, not string",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","max_attempts":1e20}]}`:                          "spec.steps[0].max_attempts: must be a whole number",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","timeout_seconds":1.5}]}`:                        "spec.steps[0].timeout_seconds: must be a whole number",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","depends_on":"b"}]}`:                             "spec.steps[0].depends_on: must be an array of strings",
		`{"external_key":"k","queue":"q","priority":"high","steps":[{"name":"a","handler":"h"}]}`:                            "spec.priority: must be a number, not string",
		`{"external_key":"k","queue":"q","retention_seconds":-1,"steps":[{"name":"a","handler":"h"}]}`:                       "spec.retention_seconds: must be 0 to 315360000 seconds",
		`{"external_key":"k","queue":"q","steps":{"name":"a"}}`:                                                              "spec.steps: must be an array, not object",
		`{"external_key":"k","queue":"q","steps":["a"]}`:                                                                     "spec.steps[0]: must be a JSON object, not string",
		`{"external_key":7,"queue":"q","steps":[{"name":"a","handler":"h"}]}`:                                                "spec.external_key: must be a string, not number",
		`[]`: "spec: must be a JSON object, not array",
		`{"external_key":"k","queue":"q","steps":[{"name":"a","handler":"h","depends_on":["b"]},{"name":"b","handler":"h","depends_on":["a"]}]}`: "spec.steps: dependency cycle: a -> b -> a",
	} {
		_, err := b.pool.Exec(b.ctx, `SELECT * FROM tasker.admit($1::jsonb)`, doc)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "22023") {
			t.Errorf("admit(%s) = %v, want %q", doc, err, want)
		}
	}
}

// An idempotency key binds admissions with other external keys to the first task of the namespace and key; other
// namespaces, and tasks without a key, are independent.
func TestAdmitIdempotencyKey(t *testing.T) {
	b := setup(t)
	spec := func(ext, ns, key string) engine.TaskSpec {
		return engine.TaskSpec{ExternalKey: ext, Namespace: ns, IdempotencyKey: key, Queue: "idem",
			Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}}
	}
	first, err := b.engine.Admit(b.ctx, spec("uid-1", "ns1", "nightly-2026-12-06"))
	if err != nil || !first.Created {
		t.Fatalf("first: %+v, %v", first, err)
	}
	again, err := b.engine.Admit(b.ctx, spec("uid-2", "ns1", "nightly-2026-12-06"))
	if err != nil || again.Created || again.TaskID != first.TaskID {
		t.Errorf("same key, another external key: %+v, %v; want task %d, not created", again, err, first.TaskID)
	}
	other, err := b.engine.Admit(b.ctx, spec("uid-3", "ns2", "nightly-2026-12-06"))
	if err != nil || !other.Created || other.TaskID == first.TaskID {
		t.Errorf("same key, another namespace: %+v, %v", other, err)
	}
	if id, err := b.engine.TaskIDByIdempotencyKey(b.ctx, "ns1", "nightly-2026-12-06"); err != nil || id != first.TaskID {
		t.Errorf("TaskIDByIdempotencyKey: %d, %v", id, err)
	}
	if _, err := b.engine.TaskIDByIdempotencyKey(b.ctx, "ns1", "nope"); !errors.Is(err, engine.ErrTaskNotFound) {
		t.Errorf("unknown key: %v", err)
	}
	// One message only: the bound admission enqueued nothing.
	steps, err := b.engine.Claim(b.ctx, "idem", 10, time.Minute, "w")
	if err != nil || len(steps) != 2 {
		t.Errorf("claimed %d steps (want one per task: 2), %v", len(steps), err)
	}
}
