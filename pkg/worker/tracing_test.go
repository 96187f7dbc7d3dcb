package worker

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
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
