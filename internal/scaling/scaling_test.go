package scaling

import (
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// spec is DefaultSpec with tweaks.
func spec(mut func(*Spec)) Spec {
	s := DefaultSpec()
	if mut != nil {
		mut(&s)
	}
	return s
}

func TestDecide(t *testing.T) {
	now := at(1000)
	cases := []struct {
		name   string
		spec   Spec
		in     Input
		want   int32
		reason Reason
		limit  Limit
	}{
		// ---- scale from zero on activation ----
		{"zero stays zero without backlog", spec(nil),
			Input{Current: 0, Backlog: 0}, 0, ReasonIdle, LimitNone},
		{"zero stays zero at activationBacklog", spec(func(s *Spec) { s.ActivationBacklog = 5 }),
			Input{Current: 0, Backlog: 5}, 0, ReasonIdle, LimitNone},
		{"zero to one just above activationBacklog", spec(func(s *Spec) { s.ActivationBacklog = 5 }),
			Input{Current: 0, Backlog: 6}, 1, ReasonActivated, LimitNone},
		{"zero to one on the first message", spec(nil),
			Input{Current: 0, Backlog: 1}, 1, ReasonActivated, LimitNone},
		{"zero to the proposal", spec(nil),
			Input{Current: 0, Backlog: 30}, 3, ReasonActivated, LimitNone},
		{"zero to the proposal, rate limited to 4", spec(nil),
			Input{Current: 0, Backlog: 500}, 4, ReasonActivated, LimitScaleUpRate},
		{"zero to minReplicas without backlog", spec(func(s *Spec) { s.MinReplicas = 2 }),
			Input{Current: 0, Backlog: 0}, 2, ReasonIdle, LimitMinReplicas},
		{"below activation but running: stays active", spec(func(s *Spec) { s.ActivationBacklog = 50 }),
			Input{Current: 2, Backlog: 20, LastActive: at(0)}, 2, ReasonAtTarget, LimitNone},

		// ---- tolerance (exact: 10% of target × current) ----
		{"exactly at target", spec(nil), Input{Current: 10, Backlog: 100}, 10, ReasonAtTarget, LimitNone},
		{"+10% kept", spec(nil), Input{Current: 10, Backlog: 110}, 10, ReasonAtTarget, LimitNone},
		{"+11% scales up", spec(func(s *Spec) { s.MaxReplicas = 100 }), Input{Current: 10, Backlog: 111}, 12, ReasonScaleUp, LimitNone},
		{"-10% kept", spec(nil), Input{Current: 10, Backlog: 90}, 10, ReasonAtTarget, LimitNone},
		{"-11% scales down (empty window)", spec(nil), Input{Current: 10, Backlog: 89}, 9, ReasonScaleDown, LimitNone},
		{"no tolerance", spec(func(s *Spec) { s.TolerancePercent = 0; s.MaxReplicas = 100 }),
			Input{Current: 10, Backlog: 101}, 11, ReasonScaleUp, LimitNone},
		{"tolerance does not hold one replica at 10%+", spec(nil),
			Input{Current: 1, Backlog: 12}, 2, ReasonScaleUp, LimitNone},

		// ---- stabilization on the way down ----
		{"held by a higher proposal inside the window", spec(nil),
			Input{Current: 10, Backlog: 20, History: []Sample{{at(1000 - 299), 100}}}, 10, ReasonStabilizing, LimitNone},
		{"held partly: highest proposal in window is 6", spec(nil),
			Input{Current: 10, Backlog: 20, History: []Sample{{at(1000 - 299), 60}, {at(1000 - 400), 100}}},
			6, ReasonStabilizing, LimitNone},
		{"sample exactly at the window edge no longer counts", spec(nil),
			Input{Current: 10, Backlog: 20, History: []Sample{{at(1000 - 300), 100}}}, 2, ReasonScaleDown, LimitNone},
		{"window never raises above current", spec(nil),
			Input{Current: 4, Backlog: 20, History: []Sample{{at(999), 1000}}}, 4, ReasonStabilizing, LimitNone},
		{"zero window scales down at once", spec(func(s *Spec) { s.ScaleDownStabilization = 0 }),
			Input{Current: 10, Backlog: 20, History: []Sample{{at(999), 100}}}, 2, ReasonScaleDown, LimitNone},

		// ---- cooldown to zero ----
		{"empty queues, cooldown not over: one replica", spec(nil),
			Input{Current: 1, Backlog: 0, LastActive: at(1000 - 299)}, 1, ReasonCoolingDown, LimitNone},
		{"empty queues, cooldown over: zero", spec(nil),
			Input{Current: 1, Backlog: 0, LastActive: at(1000 - 300)}, 0, ReasonCooledDown, LimitNone},
		{"cooled down skips the stabilization window", spec(nil),
			Input{Current: 5, Backlog: 0, LastActive: at(1000 - 300), History: []Sample{{at(999), 50}}},
			0, ReasonCooledDown, LimitNone},
		{"never active counts as cooled down (KEDA)", spec(nil),
			Input{Current: 3, Backlog: 0}, 0, ReasonCooledDown, LimitNone},
		{"empty queues, window over, cooldown not: down to one", spec(nil),
			Input{Current: 5, Backlog: 0, LastActive: at(1000 - 100), History: []Sample{{at(1000 - 301), 50}}},
			1, ReasonScaleDown, LimitNone},
		{"minReplicas 1 never goes to zero", spec(func(s *Spec) { s.MinReplicas = 1 }),
			Input{Current: 1, Backlog: 0, LastActive: at(0)}, 1, ReasonScaleDown, LimitMinReplicas},
		{"a message in flight keeps the pool active", spec(func(s *Spec) { s.ActivationBacklog = 10 }),
			Input{Current: 1, Backlog: 1, LastActive: at(0)}, 1, ReasonAtTarget, LimitNone},
		{"zero cooldown", spec(func(s *Spec) { s.Cooldown = 0 }),
			Input{Current: 2, Backlog: 0, LastActive: at(999)}, 0, ReasonCooledDown, LimitNone},

		// ---- max/min clamps ----
		{"clamped to maxReplicas", spec(func(s *Spec) { s.MaxReplicas = 3 }),
			Input{Current: 0, Backlog: 500}, 3, ReasonActivated, LimitMaxReplicas},
		{"clamped to maxReplicas while running", spec(func(s *Spec) { s.MaxReplicas = 8 }),
			Input{Current: 6, Backlog: 5000}, 8, ReasonScaleUp, LimitMaxReplicas},
		{"above a lowered maxReplicas: down at once", spec(func(s *Spec) { s.MaxReplicas = 3 }),
			Input{Current: 7, Backlog: 70, History: []Sample{{at(999), 70}}}, 3, ReasonAtTarget, LimitMaxReplicas},
		{"raised to minReplicas", spec(func(s *Spec) { s.MinReplicas = 5 }),
			Input{Current: 5, Backlog: 10, LastActive: at(999)}, 5, ReasonScaleDown, LimitMinReplicas},
		{"max below min is raised to min", spec(func(s *Spec) { s.MinReplicas = 5; s.MaxReplicas = 2 }),
			Input{Current: 0, Backlog: 1000}, 5, ReasonActivated, LimitScaleUpRate},

		// ---- scale-up rate limit: max(4 pods, 100%) per 15 s from the count at the period's start ----
		{"+4 pods from 1", spec(nil), Input{Current: 1, Backlog: 1000}, 5, ReasonScaleUp, LimitScaleUpRate},
		{"+100% from 8", spec(func(s *Spec) { s.MaxReplicas = 100 }), Input{Current: 8, Backlog: 1000}, 16, ReasonScaleUp, LimitScaleUpRate},
		{"budget spent in this period", spec(nil),
			Input{Current: 4, Backlog: 1000, Events: []Event{{at(1000 - 10), 0, 4}}}, 4, ReasonScaleUp, LimitScaleUpRate},
		{"budget partly spent", spec(nil),
			Input{Current: 3, Backlog: 1000, Events: []Event{{at(1000 - 10), 1, 3}}}, 5, ReasonScaleUp, LimitScaleUpRate},
		{"period over", spec(nil),
			Input{Current: 4, Backlog: 1000, Events: []Event{{at(1000 - 15), 0, 4}}}, 8, ReasonScaleUp, LimitScaleUpRate},
		{"scale-down in the period raises the start", spec(func(s *Spec) { s.MaxReplicas = 100 }),
			Input{Current: 2, Backlog: 1000, Events: []Event{{at(1000 - 5), 6, 2}}}, 12, ReasonScaleUp, LimitScaleUpRate},
		{"no limit with a zero period", spec(func(s *Spec) { s.ScaleUp = RateLimit{}; s.MaxReplicas = 1000 }),
			Input{Current: 1, Backlog: 1000}, 100, ReasonScaleUp, LimitNone},
		{"max binds before the rate", spec(func(s *Spec) { s.MaxReplicas = 3 }),
			Input{Current: 1, Backlog: 1000}, 3, ReasonScaleUp, LimitMaxReplicas},

		// ---- metric errors ----
		{"error keeps the current count", spec(nil),
			Input{Current: 4, Backlog: 9999, MetricsFailures: 1}, 4, ReasonMetricsUnavailable, LimitNone},
		{"error without fallback keeps the count forever", spec(nil),
			Input{Current: 4, MetricsFailures: 100}, 4, ReasonMetricsUnavailable, LimitNone},
		{"fallback waits for the threshold", spec(func(s *Spec) { s.FallbackReplicas = ptr.To(int32(2)) }),
			Input{Current: 4, MetricsFailures: 2}, 4, ReasonMetricsUnavailable, LimitNone},
		{"fallback after the threshold", spec(func(s *Spec) { s.FallbackReplicas = ptr.To(int32(2)) }),
			Input{Current: 4, MetricsFailures: 3}, 2, ReasonFallback, LimitNone},
		{"fallback from zero", spec(func(s *Spec) { s.FallbackReplicas = ptr.To(int32(1)); s.FailureThreshold = 1 }),
			Input{Current: 0, MetricsFailures: 1}, 1, ReasonFallback, LimitNone},
		{"fallback clamped to max", spec(func(s *Spec) { s.FallbackReplicas = ptr.To(int32(50)); s.MaxReplicas = 5 }),
			Input{Current: 1, MetricsFailures: 3}, 5, ReasonFallback, LimitMaxReplicas},
		{"error keeps zero at zero", spec(nil), Input{Current: 0, MetricsFailures: 1}, 0, ReasonMetricsUnavailable, LimitNone},
		{"error clamps a count below min", spec(func(s *Spec) { s.MinReplicas = 2 }),
			Input{Current: 0, MetricsFailures: 1}, 2, ReasonMetricsUnavailable, LimitMinReplicas},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Now = now
			d := Decide(tc.spec, in)
			if d.Desired != tc.want || d.Reason != tc.reason || d.Limit != tc.limit {
				t.Errorf("Decide = %d (%s, limit %q), want %d (%s, limit %q); %s", d.Desired, d.Reason, d.Limit,
					tc.want, tc.reason, tc.limit, d.Explain(tc.spec))
			}
			if msg := d.Explain(tc.spec); msg == "" || strings.Contains(msg, "%!") {
				t.Errorf("Explain = %q", msg)
			}
		})
	}
}

func TestDecideActive(t *testing.T) {
	s := spec(func(s *Spec) { s.ActivationBacklog = 5 })
	for _, tc := range []struct {
		current int32
		backlog int64
		want    bool
	}{
		{0, 0, false}, {0, 5, false}, {0, 6, true}, {1, 0, false}, {1, 1, true}, {3, 5, true}, {3, 6, true},
	} {
		if d := Decide(s, Input{Now: t0, Current: tc.current, Backlog: tc.backlog}); d.Active != tc.want {
			t.Errorf("current %d backlog %d: Active = %v, want %v", tc.current, tc.backlog, d.Active, tc.want)
		}
	}
	if d := Decide(s, Input{Now: t0, Current: 3, Backlog: 100, MetricsFailures: 1}); d.MetricsOK || d.Active {
		t.Errorf("failed reading: MetricsOK %v Active %v, want false false", d.MetricsOK, d.Active)
	}
}

// run feeds a History one reading per step of interval seconds and returns the desired counts, writing each new
// count back as the caller (the reconciler) does.
func run(s Spec, h *History, start, interval int, current int32, backlogs []int64) []int32 {
	out := make([]int32, len(backlogs))
	for i, b := range backlogs {
		now := at(start + i*interval)
		ok := b >= 0 // a negative entry is a failed reading
		d := h.Next(s, now, current, b, ok)
		h.Scaled(now, current, d.Desired)
		current = d.Desired
		out[i] = current
	}
	return out
}

func TestNoFlappingUnderSawTooth(t *testing.T) {
	s := DefaultSpec()
	var h History
	// The backlog alternates between 100 and 0 every 15 s poll for 10 minutes.
	backlogs := make([]int64, 40)
	for i := range backlogs {
		if i%2 == 0 {
			backlogs[i] = 100
		}
	}
	got := run(s, &h, 0, 15, 0, backlogs)
	// 0 → 4 (rate limit) → held (the next reading is 0) → 8 → 10, then never down while the saw-tooth lasts.
	changes := 0
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("scaled down under a saw-tooth at step %d: %v", i, got)
		}
		if got[i] != got[i-1] {
			changes++
		}
	}
	if got[len(got)-1] != 10 || changes > 3 {
		t.Fatalf("saw-tooth: %v (want a monotonic climb to 10 in at most 3 changes)", got)
	}

	// Noise inside the tolerance band around the current count changes nothing.
	var h2 History
	got = run(s, &h2, 0, 15, 10, []int64{95, 105, 91, 109, 100, 90, 110})
	for i, g := range got {
		if g != 10 {
			t.Fatalf("tolerance band: step %d = %d: %v", i, g, got)
		}
	}
}

func TestScaleDownFollowsWindowThenCooldown(t *testing.T) {
	s := spec(func(s *Spec) {
		s.ScaleDownStabilization = 60 * time.Second
		s.Cooldown = 120 * time.Second
	})
	var h History
	cur := int32(0)
	step := func(sec int, backlog int64) int32 {
		d := h.Next(s, at(sec), cur, backlog, true)
		h.Scaled(at(sec), cur, d.Desired)
		cur = d.Desired
		return cur
	}
	if got := step(0, 60); got != 4 { // rate-limited from zero
		t.Fatalf("t=0: %d", got)
	}
	if got := step(15, 60); got != 6 {
		t.Fatalf("t=15: %d", got)
	}
	// Queues drained at t=20: held at 6 for the window after the last reading of 60 (t=15).
	for sec := 30; sec < 75; sec += 15 {
		if got := step(sec, 0); got != 6 {
			t.Fatalf("t=%d: %d, want 6 (stabilizing)", sec, got)
		}
	}
	if got := step(75, 0); got != 1 { // 60 s after t=15: down, one replica until the cooldown
		t.Fatalf("t=75: %d, want 1", got)
	}
	if got := step(120, 0); got != 1 {
		t.Fatalf("t=120: %d, want 1 (cooling down)", got)
	}
	if got := step(135, 0); got != 0 { // 120 s after the last active reading (t=15)
		t.Fatalf("t=135: %d, want 0 (cooled down)", got)
	}
	if h.LastActive() != at(15) {
		t.Fatalf("LastActive = %v", h.LastActive())
	}
}

func TestHistoryMetricFailures(t *testing.T) {
	s := spec(func(s *Spec) { s.FallbackReplicas = ptr.To(int32(1)); s.FailureThreshold = 2 })
	var h History
	got := run(s, &h, 0, 15, 3, []int64{30, -1, -1, -1, 30})
	// kept, kept (1st failure), fallback (2nd), fallback, then back to the backlog (rate limit from 1: 5 ≥ 3).
	want := []int32{3, 3, 1, 1, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if h.Failures() != 0 {
		t.Fatalf("Failures = %d after a good reading", h.Failures())
	}
}

func TestHistoryStaysBounded(t *testing.T) {
	s := spec(func(s *Spec) { s.ScaleDownStabilization = 100 * time.Second })
	var h History
	cur := int32(1)
	for i := 0; i < 100000; i++ {
		// A slowly falling backlog with noise: the worst case for the monotonic queue.
		b := int64(1_000_000 - i*7 + (i%13)*3)
		d := h.Next(s, t0.Add(time.Duration(i)*time.Second), cur, b, true)
		h.Scaled(t0.Add(time.Duration(i)*time.Second), cur, d.Desired)
		cur = d.Desired
		if n := len(h.Samples()); n > 101 {
			t.Fatalf("step %d: %d samples kept for a 100 s window", i, n)
		}
		if len(h.events) > 16 {
			t.Fatalf("step %d: %d events kept for a 15 s period", i, len(h.events))
		}
	}
}

func TestSeedHoldsTheCountForOneWindow(t *testing.T) {
	s := spec(func(s *Spec) { s.ScaleDownStabilization = 60 * time.Second })
	var h History
	h.Seed(s, at(0), 5, at(-10))
	if d := h.Next(s, at(1), 5, 10, true); d.Desired != 5 || d.Reason != ReasonStabilizing {
		t.Fatalf("after seed: %d %s", d.Desired, d.Reason)
	}
	if d := h.Next(s, at(61), 5, 10, true); d.Desired != 1 {
		t.Fatalf("a window after the seed: %d %s", d.Desired, d.Reason)
	}
	if h.LastActive() != at(61) {
		t.Fatalf("LastActive = %v", h.LastActive())
	}
	var h2 History
	h2.Seed(s, at(0), 0, time.Time{})
	if len(h2.Samples()) != 0 || !h2.LastActive().IsZero() {
		t.Fatalf("seeding a pool at zero recorded %v", h2.Samples())
	}
}

func TestWithinToleranceExtremes(t *testing.T) {
	for _, tc := range []struct {
		backlog, target int64
		current, tol    int32
		want            bool
	}{
		{110, 10, 10, 10, true},
		{111, 10, 10, 10, false},
		{1<<63 - 1, 1<<31 - 1, 1<<31 - 1, 10, false},
		{(1<<31 - 1) * (1<<31 - 1), 1<<31 - 1, 1<<31 - 1, 0, true},
		{0, 1, 1, 100, true},
		{0, 1, 1, 99, false},
		{5, 1<<62 + 1, 4, 10, false}, // target × current overflows int64
	} {
		if got := withinTolerance(tc.backlog, tc.target, tc.current, tc.tol); got != tc.want {
			t.Errorf("withinTolerance(%d, %d, %d, %d) = %v, want %v", tc.backlog, tc.target, tc.current, tc.tol, got,
				tc.want)
		}
	}
}
