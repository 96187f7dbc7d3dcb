package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// A worker traces only with a provider that makes spans: with the no-op provider, or the global one while nothing
// is installed, a step costs a nil check.
func TestStepTracerOnlyWhenTracing(t *testing.T) {
	if stepTracer(nil) != nil {
		t.Error("the global provider, with nothing installed, gave a tracer")
	}
	if stepTracer(noop.NewTracerProvider()) != nil {
		t.Error("the no-op provider gave a tracer")
	}
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(t.Context()) }()
	if stepTracer(tp) == nil {
		t.Error("an SDK provider gave no tracer")
	}
}

// discardExporter drops spans (the cost measured is the worker's, not an exporter's).
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkStepSpan is the worker's tracing work per step attempt: the span's start (trace context decoded from
// the claim, attributes) and end, through a batch span processor.
func BenchmarkStepSpan(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	w := &Worker{cfg: Config{ID: "bench-worker"}}
	tracer := stepTracer(tp)
	claim := engine.ClaimedStep{TaskID: 1, StepID: 2, StepName: "s1", Handler: "noop", Attempt: 1,
		TraceContext:      json.RawMessage(`{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`),
		DependencyResults: map[string]json.RawMessage{}, ReadyAt: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		j := &job{w: w, queue: "bench", claim: claim}
		j.startSpan(tracer, time.Now())
		j.endSpan(OutcomeSucceeded, nil)
	}
}
