package ui

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// maxPending bounds the changes kept for a slow subscriber: past it, one "all" event replaces them.
const maxPending = 256

// keepAlive is how often an idle event stream gets a comment line, so that proxies keep it open.
const keepAlive = 25 * time.Second

// broker fans changes ("task ns/name", "pool ns/name") out to the open event streams. Each subscriber keeps a
// set of pending changes, so that a burst of updates to one Task is sent once, and a slow page never blocks a
// watch.
type broker struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	wake    chan struct{}
	pending map[string]struct{}
	all     bool
}

func newBroker() *broker { return &broker{subs: map[*subscriber]struct{}{}} }

func (b *broker) subscribe() *subscriber {
	s := &subscriber{wake: make(chan struct{}, 1), pending: map[string]struct{}{}}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *broker) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

func (b *broker) publish(change string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if len(s.pending) < maxPending {
			s.pending[change] = struct{}{}
		} else {
			s.all = true
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// take returns and clears a subscriber's pending changes (["all"] after an overflow).
func (b *broker) take(s *subscriber) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	if s.all {
		out = []string{"all"}
	} else {
		for c := range s.pending {
			out = append(out, c)
		}
	}
	clear(s.pending)
	s.all = false
	return out
}

// serveEvents is the event stream (text/event-stream): one "data: <change>" event per change, until the page
// goes away or the server stops.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	sub := s.events.subscribe()
	defer s.events.unsubscribe(sub)
	fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case <-sub.wake:
			for _, c := range s.events.take(sub) {
				fmt.Fprintf(w, "data: %s\n\n", c)
			}
		}
		flusher.Flush()
	}
}
