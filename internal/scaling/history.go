package scaling

import "time"

// History is what the scaler remembers about one pool between decisions: the backlog readings inside the
// stabilization window, the replica changes inside the scale-up period, the number of consecutive failed
// readings and the last time the pool was active. The zero value is empty and ready to use. A History is not safe
// for concurrent use; a pool is reconciled by one goroutine at a time.
//
// Its size is bounded by the window, whatever the polling interval: a reading makes every earlier reading with a
// lower or equal backlog irrelevant (any window holding the earlier one also holds the later, larger one), so
// the kept readings are strictly decreasing in backlog, and those older than the window are dropped.
type History struct {
	samples    []Sample
	events     []Event
	failures   int
	lastActive time.Time
}

// Next takes the reading made at now — backlog when ok, a failure otherwise — decides, and records the reading.
// It does not record a scale event: call Scaled once the new count has actually been written.
func (h *History) Next(spec Spec, now time.Time, current int32, backlog int64, ok bool) Decision {
	in := Input{Now: now, Current: current, Backlog: backlog, History: h.samples, LastActive: h.lastActive,
		Events: h.events}
	if ok {
		h.failures = 0
	} else {
		h.failures++
		in.MetricsFailures = h.failures
	}
	d := Decide(spec, in)
	if ok {
		h.add(Sample{Time: now, Backlog: max(backlog, 0)})
	}
	if d.MetricsOK && d.Active {
		h.lastActive = now
	}
	h.prune(spec.normalized(), now)
	return d
}

// Scaled records that the count went from → to at now.
func (h *History) Scaled(now time.Time, from, to int32) {
	if from != to {
		h.events = append(h.events, Event{Time: now, From: from, To: to})
	}
}

// Seed makes a History that starts while the pool already runs (after an operator restart or a leader change,
// when the in-memory history is gone) hold the current count for one stabilization window, as if the backlog
// had justified it at now, and restores the last active time from the pool's status.
func (h *History) Seed(spec Spec, now time.Time, current int32, lastActive time.Time) {
	s := spec.normalized()
	if current > 0 && current <= s.MaxReplicas {
		h.add(Sample{Time: now, Backlog: int64(current) * s.TargetBacklogPerReplica})
	}
	if lastActive.After(h.lastActive) {
		h.lastActive = lastActive
	}
}

// LastActive is the last time a reading found the pool active (zero: never).
func (h *History) LastActive() time.Time { return h.lastActive }

// Failures is the number of consecutive failed readings.
func (h *History) Failures() int { return h.failures }

// Samples returns a copy of the readings kept (oldest first).
func (h *History) Samples() []Sample { return append([]Sample(nil), h.samples...) }

func (h *History) add(s Sample) {
	for len(h.samples) > 0 && h.samples[len(h.samples)-1].Backlog <= s.Backlog {
		h.samples = h.samples[:len(h.samples)-1]
	}
	h.samples = append(h.samples, s)
}

func (h *History) prune(s Spec, now time.Time) {
	cutoff := now.Add(-s.ScaleDownStabilization)
	i := 0
	for i < len(h.samples) && !h.samples[i].Time.After(cutoff) {
		i++
	}
	h.samples = append(h.samples[:0], h.samples[i:]...)

	cutoff = now.Add(-s.ScaleUp.Period)
	j := 0
	for j < len(h.events) && !h.events[j].Time.After(cutoff) {
		j++
	}
	h.events = append(h.events[:0], h.events[j:]...)
}
