package engine

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the engine's spans (docs/tracing.md).
const TracerName = "github.com/tasker-operator/tasker-operator/internal/engine"

// The engine traces the calls the operator makes (admission, status reads, actions, upkeep) with the global
// tracer provider: a no-op unless the process set one up (internal/tracing). The worker calls (claim, complete,
// fail, heartbeat, release) are not traced here: they are the hot path, and the worker SDK's step spans cover
// them.

// Span attributes of engine calls.
var (
	dbSystem = attribute.String("db.system.name", "postgresql")
	attrTask = attribute.Key("tasker.task.id")
)

// startSpan starts the span of the engine call op ("tasker.admit", ...), a client span of PostgreSQL.
func startSpan(ctx context.Context, op string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(TracerName).Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(append(attrs, dbSystem, attribute.String("db.operation.name", op))...))
}

// endSpan ends span, recording err (a database error's safe message: the driver's text stays in the logs).
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
