package worker

import (
	"context"
	"sync"
)

// slots counts a worker's free handler slots. A claim takes every free slot at once (up to a batch size) and a
// batch of reports gives its slots back at once, so a worker whose handlers are quick claims in the batches it
// reports in rather than a step at a time as slots trickle back.
type slots struct {
	mu   sync.Mutex
	free int
	// avail holds a token while slots may be free: take waits on it.
	avail chan struct{}
}

func newSlots(n int) *slots {
	s := &slots{free: n, avail: make(chan struct{}, 1)}
	s.avail <- struct{}{}
	return s
}

// take waits until at least one slot is free, then takes up to max of them; 0 when ctx ended first.
func (s *slots) take(ctx context.Context, max int) int {
	for {
		s.mu.Lock()
		if s.free > 0 {
			n := min(s.free, max)
			s.free -= n
			if s.free > 0 {
				s.signal()
			}
			s.mu.Unlock()
			return n
		}
		s.mu.Unlock()
		select {
		case <-s.avail:
		case <-ctx.Done():
			return 0
		}
	}
}

// give returns n slots.
func (s *slots) give(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.free += n
	s.signal()
	s.mu.Unlock()
}

func (s *slots) signal() {
	select {
	case s.avail <- struct{}{}:
	default:
	}
}

// tryTake takes up to max free slots without waiting.
func (s *slots) tryTake(max int) int {
	if max <= 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(s.free, max)
	s.free -= n
	return n
}
