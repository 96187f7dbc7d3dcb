package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

func at(sec int) *time.Time {
	t := time.Date(2026, 11, 27, 12, 0, sec, 0, time.UTC)
	return &t
}

func TestRenderDiamond(t *testing.T) {
	v := TaskView{
		Namespace: "shop", Name: "order-1042", Phase: "Succeeded", Progress: "4/4", TaskID: 7,
		StartedAt: at(0), CompletedAt: at(3),
		Steps: []StepView{
			{Name: "validate-order", State: "succeeded", Attempts: 1, StartedAt: at(0), FinishedAt: at(0)},
			{Name: "charge-payment", State: "succeeded", Attempts: 2, DependsOn: []string{"validate-order"},
				StartedAt: at(1), FinishedAt: at(2), Error: "card processor\ntimed out", Result: json.RawMessage(`{"ok":true}`)},
			{Name: "reserve-inventory", State: "succeeded", Attempts: 1, DependsOn: []string{"validate-order"}, StartedAt: at(0), FinishedAt: at(1)},
			{Name: "ship", State: "running", Attempts: 1, DependsOn: []string{"charge-payment", "reserve-inventory"}, StartedAt: at(2)},
		},
	}
	var b strings.Builder
	if err := Render(&b, v, RenderOptions{Width: 200, Now: *at(4)}); err != nil {
		t.Fatal(err)
	}
	want := `shop/order-1042  Succeeded  4/4 steps  3.0s  (task 7)
validate-order        succeeded  1 attempt   0s
├─ charge-payment     succeeded  2 attempts  1.0s    succeeded on attempt 2; attempt 1 failed: card processor timed out; result: {"ok":true}
└─ reserve-inventory  succeeded  1 attempt   1.0s
   └─ ship            running    1 attempt   2.0s    after charge-payment
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderCutsToWidthAndMentionsHiddenSteps(t *testing.T) {
	v := TaskView{Namespace: "ns", Name: "big", Phase: "Running", Progress: "1/80", Source: "status",
		Steps: []StepView{{Name: "a", State: "failed", Attempts: 3, Error: strings.Repeat("x", 500)}}}
	v.Counts.Total = 80
	var b strings.Builder
	if err := Render(&b, v, RenderOptions{Width: 60}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	if n := len([]rune(lines[1])); n != 60 {
		t.Errorf("step line is %d runes wide, want 60", n)
	}
	if !strings.Contains(lines[2], "79 more steps") {
		t.Errorf("missing the hidden-steps note: %q", lines[2])
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		500 * time.Microsecond:        "500µs",
		12 * time.Millisecond:         "12ms",
		1200 * time.Millisecond:       "1.2s",
		3*time.Minute + 4*time.Second: "3m04s",
		2*time.Hour + 5*time.Minute:   "2h05m",
		-time.Second:                  "0s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestErrorNoteSaysWhichAttemptFailed(t *testing.T) {
	tests := []struct {
		state    string
		attempts int
		want     string
	}{
		{"succeeded", 3, "succeeded on attempt 3; attempt 2 failed: boom"},
		{"resolved", 1, "resolved; an earlier failure: boom"},
		{"failed", 3, "attempt 3 failed: boom"},
		{"retrying", 1, "attempt 1 failed, retrying: boom"},
		{"running", 2, "attempt 1 failed: boom"},
		{"enqueued", 2, "attempt 1 failed: boom"},
		{"cancelled", 1, "error: boom"},
		{"skipped", 0, "error: boom"},
	}
	for _, tt := range tests {
		if got := errorNote(StepView{State: tt.state, Attempts: tt.attempts, Error: "boom"}); got != tt.want {
			t.Errorf("%s after %d attempts: %q, want %q", tt.state, tt.attempts, got, tt.want)
		}
	}
}

func TestHistoryTable(t *testing.T) {
	entries := []HistoryEntry{
		{At: *at(0), Step: "charge", From: "enqueued", To: "running", Attempt: 1, Worker: "w-1", Reason: "claimed"},
		{At: *at(1), Step: "charge", From: "running", To: "retrying", Attempt: 1, Worker: "w-1", Reason: "failed",
			Error: "card processor\ntimed out"},
		{At: *at(2), From: "running", To: "succeeded", Reason: "all steps finished"},
	}
	var b strings.Builder
	if err := HistoryTable(&b, entries, 0); err != nil {
		t.Fatal(err)
	}
	want := `TIME                      STEP    TRANSITION            ATTEMPT  WORKER  REASON              ERROR
2026-11-27T12:00:00.000Z  charge  enqueued -> running   1        w-1     claimed
2026-11-27T12:00:01.000Z  charge  running -> retrying   1        w-1     failed              card processor timed out
2026-11-27T12:00:02.000Z  (task)  running -> succeeded  -        -       all steps finished
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWaitNoteSaysWhenAStepCanRun(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	for _, tc := range []struct {
		s    StepView
		want string
	}{
		{StepView{State: "enqueued", NextAttemptAt: &later}, "delayed until 2026-12-06T10:00:00Z"},
		{StepView{State: "retrying", NextAttemptAt: &later}, "next attempt at 2026-12-06T10:00:00Z"},
		{StepView{State: "enqueued", NextAttemptAt: &now}, ""}, // due: nothing to wait for
		{StepView{State: "enqueued"}, ""},
		{StepView{State: "running", NextAttemptAt: &later}, ""},
	} {
		if got := waitNote(tc.s, now); got != tc.want {
			t.Errorf("waitNote(%s, %v) = %q, want %q", tc.s.State, tc.s.NextAttemptAt, got, tc.want)
		}
	}
	var b strings.Builder
	v := TaskView{Name: "t", Phase: "Running", Steps: []StepView{{Name: "remind", State: "enqueued", NextAttemptAt: &later}}}
	if err := Render(&b, v, RenderOptions{Width: 120, Now: now}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "remind") || !strings.Contains(b.String(), "delayed until 2026-12-06T10:00:00Z") {
		t.Errorf("tree:\n%s", b.String())
	}
}

// A map step is one line, with its instances' counts; its result (the gathered array) follows.
func TestRenderMapAsOneLine(t *testing.T) {
	v := TaskView{Namespace: "ns", Name: "m", Phase: "Running", Progress: "1/3", Steps: []StepView{
		{Name: "list", State: "succeeded", Attempts: 1},
		{Name: "each", State: "mapping", Attempts: 1, DependsOn: []string{"list"},
			Map: &taskerv1alpha1.StepCounts{Total: 500, Succeeded: 480, Running: 8, Enqueued: 12}},
		{Name: "sum", State: "pending", DependsOn: []string{"each"}},
	}}
	var b strings.Builder
	if err := Render(&b, v, RenderOptions{Width: 200, Now: *at(4)}); err != nil {
		t.Fatal(err)
	}
	if want := "└─ each    mapping    1 attempt   -       map of 500 items: 480 succeeded, 8 running, 12 enqueued\n"; !strings.Contains(b.String(), want) {
		t.Fatalf("got:\n%s\nwant a line:\n%s", b.String(), want)
	}
}

// A child workflow is a subtree of its step, drawn before the step's dependents, the step's line counting the
// child's steps; the Task's outputs follow the tree.
func TestRenderChildWorkflowAsSubtree(t *testing.T) {
	v := TaskView{Namespace: "ns", Name: "c", Phase: "Succeeded", Progress: "6/6", Outputs: []byte(`{"region":"eu"}`),
		Steps: []StepView{
			{Name: "choose", State: "succeeded", Attempts: 1},
			{Name: "report", State: "succeeded", Attempts: 1, DependsOn: []string{"choose"},
				Child: &taskerv1alpha1.ChildSummary{Template: "nightly-report",
					Steps: taskerv1alpha1.StepCounts{Total: 3, Succeeded: 3}}},
			{Name: "publish", State: "succeeded", Attempts: 1, DependsOn: []string{"report"}},
			{Name: "report/gather-sales", State: "succeeded", Attempts: 1, ChildOf: "report"},
			{Name: "report/gather-refunds", State: "succeeded", Attempts: 1, ChildOf: "report"},
			{Name: "report/render", State: "succeeded", Attempts: 1, ChildOf: "report",
				DependsOn: []string{"report/gather-sales", "report/gather-refunds"}},
		}}
	var b strings.Builder
	if err := Render(&b, v, RenderOptions{Width: 200, Now: *at(4)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"└─ report ", "   ├─ report/gather-sales ", "   │  └─ report/render ",
		"   └─ publish ", "outputs: {\"region\":\"eu\"}"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
	if !strings.Contains(b.String(), "child workflow nightly-report: 3 steps: 3 succeeded") {
		t.Errorf("report's line has no child counts:\n%s", b.String())
	}
	if strings.Index(b.String(), "report/render") > strings.Index(b.String(), "publish") {
		t.Errorf("the child's subtree should come before report's dependents:\n%s", b.String())
	}
}
