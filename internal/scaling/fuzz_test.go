package scaling

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzDecide checks, for any spec and input, that Decide does not panic and keeps the count within
// [minReplicas, maxReplicas] (after normalization), that it only reaches zero when minReplicas is 0 and the pool
// was at zero, cooled down or fell back, and that a History driven by arbitrary readings stays bounded.
func FuzzDecide(f *testing.F) {
	f.Add(int32(0), int32(10), int64(10), int64(0), int32(300), int32(300), int32(3), int32(-1), int32(3),
		int64(500), int32(0), uint8(0), int32(-1), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(int32(1), int32(1), int64(1), int64(5), int32(0), int32(0), int32(0), int32(7), int32(1),
		int64(-3), int32(1000), uint8(5), int32(100), []byte{})
	f.Add(int32(-5), int32(-9), int64(-1), int64(-1), int32(-1), int32(-1), int32(-1), int32(-1), int32(-1),
		int64(1<<62), int32(-1), uint8(255), int32(1<<30), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, minR, maxR int32, target, activation int64, cooldownS, windowS, tol, fallback,
		threshold int32, backlog int64, current int32, failures uint8, lastActiveAgoS int32, hist []byte) {
		s := Spec{
			MinReplicas: minR, MaxReplicas: maxR, TargetBacklogPerReplica: target, ActivationBacklog: activation,
			Cooldown: time.Duration(cooldownS) * time.Second, ScaleDownStabilization: time.Duration(windowS) * time.Second,
			ScaleUp: DefaultScaleUp, TolerancePercent: tol, FailureThreshold: threshold,
		}
		if fallback >= 0 {
			s.FallbackReplicas = &fallback
		}
		n := s.normalized()
		now := t0
		in := Input{Now: now, Current: current, Backlog: backlog, MetricsFailures: int(failures % 8)}
		if lastActiveAgoS >= 0 {
			in.LastActive = now.Add(-time.Duration(lastActiveAgoS) * time.Second)
		}
		// History: 9 bytes per sample (1 byte age in seconds, 8 bytes backlog); the same bytes as events.
		for len(hist) >= 9 {
			age := time.Duration(hist[0]) * time.Second
			v := int64(binary.LittleEndian.Uint64(hist[1:9]))
			in.History = append(in.History, Sample{Time: now.Add(-age), Backlog: v})
			in.Events = append(in.Events, Event{Time: now.Add(-age), From: int32(v), To: int32(v >> 32)})
			hist = hist[9:]
		}

		d := Decide(s, in)
		if d.Desired < n.MinReplicas || d.Desired > n.MaxReplicas {
			t.Fatalf("Desired %d outside [%d, %d] (spec %+v, input %+v): %+v", d.Desired, n.MinReplicas,
				n.MaxReplicas, s, in, d)
		}
		if d.Desired == 0 && current > 0 {
			fellBack := d.Reason == ReasonFallback && *s.FallbackReplicas <= 0
			if n.MinReplicas != 0 || !(d.Reason == ReasonCooledDown || fellBack) {
				t.Fatalf("went to zero from %d with reason %s (spec %+v, input %+v)", current, d.Reason, s, in)
			}
		}
		if d.MetricsOK && d.Desired > max(current, 0) && d.Desired > n.MinReplicas {
			if limit := scaleUpLimit(max(current, 0), in.Events, now, s.ScaleUp); d.Desired > limit {
				t.Fatalf("scale-up to %d beyond the rate limit %d", d.Desired, limit)
			}
		}
		_ = d.Explain(s)

		// The same readings through a History: bounded, and within the bounds every step.
		var h History
		cur := max(current, 0)
		for i := 0; i < 50; i++ {
			b := backlog >> (i % 63)
			stepNow := now.Add(time.Duration(i) * time.Second)
			dd := h.Next(s, stepNow, cur, b, (i+int(failures))%5 != 0)
			if dd.Desired < n.MinReplicas || dd.Desired > n.MaxReplicas {
				t.Fatalf("History step %d: Desired %d outside [%d, %d]", i, dd.Desired, n.MinReplicas, n.MaxReplicas)
			}
			h.Scaled(stepNow, cur, dd.Desired)
			cur = dd.Desired
		}
		if len(h.samples) > 51 || len(h.events) > 51 {
			t.Fatalf("History grew to %d samples, %d events", len(h.samples), len(h.events))
		}
	})
}
