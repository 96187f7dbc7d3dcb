package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// collector stands in for an OpenTelemetry Collector in the -tracing runs: an OTLP/HTTP endpoint on 127.0.0.1
// that reads every export request in full and discards it (decoding would charge the collector's work to the
// workers, with whom it shares the machine), counting requests and bytes.
type collector struct {
	srv      *http.Server
	url      string
	requests atomic.Int64
	bytes    atomic.Int64
}

func startCollector() (*collector, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{url: "http://" + ln.Addr().String() + "/v1/traces"}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		c.requests.Add(1)
		c.bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse: no bytes
	})}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// provider returns a tracer provider for one worker, as pkg/tracing makes it in production (batch span
// processor with its defaults, or OTEL_BSP_* from the environment; OTLP/HTTP), exporting to the collector.
func (c *collector) provider(ctx context.Context, id string) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.url))
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName("bench-worker"), semconv.ServiceInstanceID(id))
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
