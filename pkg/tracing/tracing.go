// Package tracing sets up OpenTelemetry tracing from the standard OTEL_* environment variables, for the operator,
// the workers and any program built on the worker SDK (docs/tracing.md).
//
// Tracing is on when the environment names an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or asks for the OTLP exporter (OTEL_TRACES_EXPORTER=otlp); it is off when
// none is set, and whenever OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. Off, nothing is installed: the
// global tracer provider stays OpenTelemetry's no-op, and instrumented code pays nothing. On, spans go through a
// batch span processor (OTEL_BSP_*) to an OTLP exporter, over HTTP/protobuf by default or gRPC
// (OTEL_EXPORTER_OTLP_PROTOCOL or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = grpc); the exporters read their other
// settings (headers, TLS, timeout, compression) from the environment themselves, the SDK reads the sampler
// (OTEL_TRACES_SAMPLER, default parentbased_always_on), and OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name
// the resource.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Enabled tells whether the environment (read with getenv; nil: os.Getenv) asks for traces: see the package
// documentation. An OTEL_TRACES_EXPORTER other than otlp or none is an error (this build exports OTLP only).
func Enabled(getenv func(string) string) (bool, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", exp)
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
}

// NewProvider returns a tracer provider exporting to the OTLP endpoint the environment names, for a program
// called serviceName (unless OTEL_SERVICE_NAME says otherwise), or nil when the environment does not ask for
// traces (Enabled). The caller shuts it down (flushing the spans still buffered) when done. It does not install
// the provider: Setup does.
func NewProvider(ctx context.Context, serviceName string) (*sdktrace.TracerProvider, error) {
	on, err := Enabled(nil)
	if err != nil || !on {
		return nil, err
	}
	var exp *otlptrace.Exporter
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch strings.ToLower(strings.TrimSpace(proto)) {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: only http/protobuf and grpc are supported", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over the program's own name.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(serviceName)), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Setup installs, when the environment asks for traces, a provider from NewProvider as the global tracer provider,
// with the W3C trace context and baggage as the global propagators. It returns the function that flushes and
// stops it (call it on exit; a no-op when tracing is off) and whether tracing is on.
func Setup(ctx context.Context, serviceName string) (shutdown func(context.Context) error, on bool, err error) {
	tp, err := NewProvider(ctx, serviceName)
	if err != nil || tp == nil {
		return func(context.Context) error { return nil }, false, err
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, true, nil
}
