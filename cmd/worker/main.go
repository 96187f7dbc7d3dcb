// Command worker is tasker's reference worker: the Go worker SDK (pkg/worker) with built-in handlers for demos
// and tests:
//
//   - echo: returns its inputs;
//   - sleep: waits inputs.seconds (stops when the step is cancelled);
//   - fail: fails retryably on attempts 1..inputs.failTimes then succeeds, or permanently with
//     inputs.permanent; inputs.message is the error;
//   - http: makes the request in inputs {method, url, headers, body, timeoutSeconds}; 2xx succeeds with
//     {status, body, headers}, 4xx fails permanently, 408/429/5xx retryably (honouring Retry-After).
//
// No handler runs commands. Every flag has an environment variable fallback (the WorkerPool controller injects
// TASKER_DATABASE_URL, TASKER_QUEUES, TASKER_SLOTS and TASKER_WORKER_ID). SIGTERM or SIGINT drains the worker
// (see --drain-timeout) and exits 0; a second signal exits at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/tasker-operator/tasker-operator/pkg/tracing"
	"github.com/tasker-operator/tasker-operator/pkg/worker"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// options are the command line, after environment fallbacks.
type options struct {
	databaseURL       string
	queues            []string
	slots             int
	id                string
	visibilityTimeout time.Duration
	pollInterval      time.Duration
	drainTimeout      time.Duration
	metricsAddr       string
	logLevel          slog.Level
	logFormat         string
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var (
		o                                  options
		queues, slots, vt, poll, drain, lv string
	)
	fs.StringVar(&o.databaseURL, "database-url", env("TASKER_DATABASE_URL", ""),
		"PostgreSQL URL of the tasker database ($TASKER_DATABASE_URL). Required.")
	fs.StringVar(&queues, "queues", env("TASKER_QUEUES", "default"),
		"Comma-separated queues to take steps from ($TASKER_QUEUES).")
	fs.StringVar(&slots, "slots", env("TASKER_SLOTS", strconv.Itoa(worker.DefaultSlots)),
		"Steps run at once ($TASKER_SLOTS).")
	fs.StringVar(&o.id, "id", env(worker.EnvWorkerID, ""),
		"Worker id recorded with claims ($TASKER_WORKER_ID; default the host name, which is the pod name).")
	fs.StringVar(&vt, "visibility-timeout", env("TASKER_VISIBILITY_TIMEOUT", worker.DefaultVisibilityTimeout.String()),
		"Lease of a claim: steps of a worker that died run again after this long ($TASKER_VISIBILITY_TIMEOUT).")
	fs.StringVar(&poll, "poll-interval", env("TASKER_POLL_INTERVAL", worker.DefaultPollInterval.String()),
		"Claim this often without a notification ($TASKER_POLL_INTERVAL).")
	fs.StringVar(&drain, "drain-timeout", env("TASKER_DRAIN_TIMEOUT", worker.DefaultDrainTimeout.String()),
		"On SIGTERM, let running steps finish for this long, then cancel and release them ($TASKER_DRAIN_TIMEOUT). "+
			"Keep it a few seconds below the pod's terminationGracePeriodSeconds.")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", env("TASKER_METRICS_BIND_ADDRESS", ":8080"),
		"Address of the /metrics and /healthz endpoint ($TASKER_METRICS_BIND_ADDRESS; \"0\" disables it).")
	fs.StringVar(&lv, "log-level", env("TASKER_LOG_LEVEL", "info"), "debug, info, warn or error ($TASKER_LOG_LEVEL).")
	fs.StringVar(&o.logFormat, "log-format", env("TASKER_LOG_FORMAT", "json"), "json or text ($TASKER_LOG_FORMAT).")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var errs []error
	if o.databaseURL == "" {
		errs = append(errs, errors.New("--database-url (or TASKER_DATABASE_URL) is required"))
	}
	for _, q := range strings.Split(queues, ",") {
		if q = strings.TrimSpace(q); q != "" {
			o.queues = append(o.queues, q)
		}
	}
	var err error
	if o.slots, err = strconv.Atoi(strings.TrimSpace(slots)); err != nil || o.slots < 1 {
		errs = append(errs, fmt.Errorf("--slots: want a positive integer, got %q", slots))
	}
	duration := func(name, v string, dst *time.Duration) {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			// Plain numbers are seconds (handy in environment variables).
			f, ferr := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if ferr != nil {
				errs = append(errs, fmt.Errorf("--%s: want a duration such as 30s, got %q", name, v))
				return
			}
			d = time.Duration(f * float64(time.Second))
		}
		*dst = d
	}
	duration("visibility-timeout", vt, &o.visibilityTimeout)
	duration("poll-interval", poll, &o.pollInterval)
	duration("drain-timeout", drain, &o.drainTimeout)
	if err := o.logLevel.UnmarshalText([]byte(lv)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	if o.logFormat != "json" && o.logFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format: want json or text, got %q", o.logFormat))
	}
	return o, errors.Join(errs...)
}

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	o, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	var h slog.Handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	if o.logFormat == "text" {
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	}
	log := slog.New(h)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := worker.Config{
		Queues:            o.queues,
		Slots:             o.slots,
		ID:                o.id,
		VisibilityTimeout: o.visibilityTimeout,
		PollInterval:      o.pollInterval,
		DrainTimeout:      o.drainTimeout,
		Logger:            log,
		Registerer:        reg,
	}
	if o.drainTimeout == 0 {
		cfg.DrainTimeout = -1 // 0 on the command line means: do not wait
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()

	// Tracing from the OTEL_* environment (docs/tracing.md), installed before the worker is made: the worker takes
	// the global tracer provider as it is then.
	shutdownTracing, tracingOn, err := tracing.Setup(ctx, "tasker-worker")
	if err != nil {
		log.Error("cannot set up tracing", "err", err)
		return 2
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flushing traces failed", "err", err)
		}
	}()

	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	w, err := worker.Open(openCtx, o.databaseURL, cfg)
	cancel()
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer w.Close()
	client := &http.Client{Timeout: httpMaxTimeout + time.Minute}
	if tracingOn {
		// The http handler's requests become children of their step's span (and carry its traceparent).
		client.Transport = otelhttp.NewTransport(http.DefaultTransport)
	}
	for name, fn := range builtins(client) {
		w.Handle(name, fn)
	}

	if o.metricsAddr != "0" && o.metricsAddr != "" {
		srv, err := serveMetrics(o.metricsAddr, reg, log)
		if err != nil {
			log.Error("cannot serve metrics", "addr", o.metricsAddr, "err", err)
			return 1
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	if err := w.Run(ctx); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	return 0
}

func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return srv, nil
}
