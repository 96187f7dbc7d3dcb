package ui

import (
	"sync"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// maxPoolSamples bounds one pool's kept readings, however often its status changes.
const maxPoolSamples = 3600

// poolSample is a WorkerPool's status at one time.
type poolSample struct {
	At             time.Time
	Backlog        int64
	Desired, Ready int32
}

// poolHistory keeps the WorkerPools' statuses seen by the watch within a window (an hour), for the charts. The
// cluster keeps no such history: it starts when the UI does.
type poolHistory struct {
	window time.Duration
	mu     sync.Mutex
	since  time.Time
	pools  map[string][]poolSample
}

func newPoolHistory(window time.Duration) *poolHistory {
	return &poolHistory{window: window, pools: map[string][]poolSample{}}
}

// record keeps the pool's status at now when it differs from the last one kept.
func (h *poolHistory) record(p *taskerv1alpha1.WorkerPool, now time.Time) {
	s := poolSample{At: now, Backlog: p.Status.Backlog, Desired: p.Status.DesiredReplicas, Ready: p.Status.ReadyReplicas}
	key := p.Namespace + "/" + p.Name
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		h.since = now
	}
	samples := h.pools[key]
	if n := len(samples); n > 0 && samples[n-1].Backlog == s.Backlog && samples[n-1].Desired == s.Desired &&
		samples[n-1].Ready == s.Ready {
		return
	}
	samples = append(samples, s)
	// Keep the last reading older than the window: it says what the values were when the window opens.
	drop := 0
	for drop+1 < len(samples) && !samples[drop+1].At.After(now.Add(-h.window)) {
		drop++
	}
	drop = max(drop, len(samples)-maxPoolSamples)
	h.pools[key] = append(samples[:0:0], samples[drop:]...)
}

// samples returns a copy of a pool's readings, oldest first, and when the history started.
func (h *poolHistory) samples(namespace, name string) ([]poolSample, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]poolSample(nil), h.pools[namespace+"/"+name]...), h.since
}
