// Package tracing tests tracing end to end: the operator (envtest's kube-apiserver, a real PostgreSQL, the
// operator as it ships) and two workers of the Go SDK export their spans over OTLP/HTTP, configured by the
// standard OTEL_* environment, to a receiver the test serves on 127.0.0.1, which decodes them as a collector
// would. The tests check what arrives: one trace per Task, and the parent/child links between its spans.
package tracing

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
	"github.com/tasker-operator/tasker-operator/pkg/tracing"
)

var (
	env   *testenv.Env
	dbURL string
	pool  *pgxpool.Pool
	rcv   *receiver
	// operatorTP is the operator's tracer provider (the global one, installed from the environment).
	operatorTP *sdktrace.TracerProvider
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if rcv, err = startReceiver(); err != nil {
		fmt.Fprintln(os.Stderr, "tracing: receiver:", err)
		return 1
	}
	defer func() { _ = rcv.srv.Close() }()
	// The environment a Deployment would set: where the collector is. The rest (protocol, sampler) is default;
	// the batch processor exports every 50 ms instead of 5 s so that the test does not wait.
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + rcv.addr,
		"OTEL_BSP_SCHEDULE_DELAY":     "50",
	} {
		_ = os.Setenv(k, v)
	}
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_TRACES_SAMPLER"} {
		_ = os.Unsetenv(k)
	}
	shutdown, on, err := tracing.Setup(context.Background(), "tasker-operator")
	if err != nil || !on {
		fmt.Fprintln(os.Stderr, "tracing: setup:", on, err)
		return 1
	}
	defer func() { _ = shutdown(context.Background()) }()
	operatorTP = otel.GetTracerProvider().(*sdktrace.TracerProvider)

	e, stop, err := testenv.StartWithDatabase("tracing", testenv.Options{Operator: operator.Options{}},
		store.Options{MaxConns: 10}, engine.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
		return 1
	}
	defer stop()
	env, dbURL, pool = e.Env, e.URL, e.Pool
	return m.Run()
}

var waitFor = testenv.WaitFor

// flush exports what the operator's provider holds.
func flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := operatorTP.ForceFlush(ctx); err != nil {
		t.Fatalf("flush the operator's spans: %v", err)
	}
}
