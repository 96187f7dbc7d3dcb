// Package ui is tasker's read-only web UI: the Task list, a Task's step graph with a panel per step, and the
// WorkerPools with their backlog and replicas over the last hour. Pages are rendered on the server (html/template,
// the graph as inline SVG laid out in Go) and kept live by a small script that refetches a page when the watch
// reports a change (Server-Sent Events). The assets are embedded: the UI needs nothing from the network.
//
// The Server reads through two narrow interfaces: Cluster (the apiserver, as the user's credentials see it) and
// Database (the tasker database, optional). `taskerctl ui` wires them to a watch (KubeCluster) and to the engine.
package ui

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// Options configure a Server.
type Options struct {
	// Cluster is where Tasks and WorkerPools are read. Required.
	Cluster Cluster
	// Database reads step details (every step, inputs, results, attempts); nil without a database URL.
	Database Database
	// AllowedHosts are the Host headers served (host:port), a guard against DNS rebinding of a UI bound to
	// loopback; empty serves any.
	AllowedHosts []string
	// ErrorLog receives what went wrong in full (a page shows the safe message); nil discards it.
	ErrorLog *log.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server serves the UI. Create it with New; it is safe for concurrent use.
type Server struct {
	opts   Options
	events *broker
	pools  *poolHistory
	mux    *http.ServeMux
}

// ErrPoolsHidden is Cluster.WorkerPools' error when the credentials may not list WorkerPools.
var ErrPoolsHidden = errors.New("these credentials may not list WorkerPools")

// New returns a Server on opts.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ErrorLog == nil {
		opts.ErrorLog = log.New(discard{}, "", 0)
	}
	s := &Server{opts: opts, events: newBroker(), pools: newPoolHistory(time.Hour)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/tasks", http.StatusFound) })
	mux.HandleFunc("GET /tasks", s.tasksPage)
	mux.HandleFunc("GET /tasks/{namespace}/{name}", s.taskPage)
	mux.HandleFunc("GET /tasks/{namespace}/{name}/steps/{step}", s.stepPanelFragment)
	mux.HandleFunc("GET /pools", s.poolsPage)
	mux.HandleFunc("GET /crontasks", s.cronTasksPage)
	mux.HandleFunc("GET /events", s.serveEvents)
	mux.Handle("GET /static/", staticHandler())
	s.mux = mux
	return s
}

// Handler is the UI with its guards: the allowed hosts, security headers and compression.
func (s *Server) Handler() http.Handler {
	return s.guard(compress(s.mux))
}

// Observe takes an object a watch saw change (added, updated or deleted): the pages showing it update, and a
// WorkerPool's status is kept for its charts. Objects of other types are ignored.
func (s *Server) Observe(obj runtime.Object) {
	switch o := obj.(type) {
	case *taskerv1alpha1.Task:
		s.events.publish("task " + o.Namespace + "/" + o.Name)
	case *taskerv1alpha1.WorkerPool:
		s.pools.record(o, s.opts.Now())
		s.events.publish("pool " + o.Namespace + "/" + o.Name)
	case *taskerv1alpha1.CronTask:
		s.events.publish("crontask " + o.Namespace + "/" + o.Name)
	}
}

// Serve serves the UI on l until ctx is done, then closes the live connections and returns.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: s.opts.ErrorLog,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	err := srv.Serve(l)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// guard refuses requests for other hosts and sets the headers every response has: a strict Content Security
// Policy (the UI's own script and styles only), no framing, no sniffing.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.opts.AllowedHosts) > 0 && !slices.Contains(s.opts.AllowedHosts, r.Host) {
			http.Error(w, "unknown host "+r.Host+": open the address taskerctl ui printed", http.StatusMisdirectedRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
