package worker

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the worker's spans (docs/tracing.md).
const TracerName = "github.com/tasker-operator/tasker-operator/pkg/worker"

// Attributes of a step attempt's span.
const (
	AttrTaskID       = attribute.Key("tasker.task.id")
	AttrStepID       = attribute.Key("tasker.step.id")
	AttrStepName     = attribute.Key("tasker.step.name")
	AttrHandler      = attribute.Key("tasker.step.handler")
	AttrAttempt      = attribute.Key("tasker.step.attempt")
	AttrDependencies = attribute.Key("tasker.step.dependencies")
	AttrQueue        = attribute.Key("tasker.queue")
	AttrQueueWait    = attribute.Key("tasker.step.queue_wait_ms")
	AttrWorkerID     = attribute.Key("tasker.worker.id")
	AttrOutcome      = attribute.Key("tasker.step.outcome")
)

// Outcomes of a step attempt (AttrOutcome).
const (
	OutcomeSucceeded     = "succeeded"
	OutcomeRetrying      = "retrying"
	OutcomeFailed        = "failed"
	OutcomeReleased      = "released"
	OutcomeStopped       = "stopped"     // the task was stopped, or the lease lost: the outcome was discarded
	OutcomeStaleLease    = "stale_lease" // reported, but the lease was no longer valid
	OutcomeUnreported    = "unreported"  // the report failed: the step runs again when its lease expires
	OutcomeResultRefused = "result_refused"
)

// w3c reads the trace context claims return: W3C traceparent and tracestate, whatever propagators the process
// configured (the column holds W3C fields, docs/tracing.md).
var w3c = propagation.TraceContext{}

// stepTracer returns the tracer of tp for step spans, or nil when tp does not trace (the no-op provider, or the
// global one while nothing was installed): then a step costs one nil check. It starts a probe span to tell, and
// leaves it unended (an unended span is never exported).
func stepTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	t := tp.Tracer(TracerName)
	if _, probe := t.Start(context.Background(), "probe"); !probe.SpanContext().IsValid() {
		return nil
	}
	return t
}

// startSpan starts the span of j's attempt, a child of its task's span (the trace context its claim returned),
// and puts it in j.ctx for the handler. Only when the worker traces.
func (j *job) startSpan(t trace.Tracer, now time.Time) {
	parent := context.Background()
	if len(j.claim.TraceContext) > 0 {
		var carrier propagation.MapCarrier
		if json.Unmarshal(j.claim.TraceContext, &carrier) == nil {
			parent = w3c.Extract(parent, carrier)
		}
	}
	deps := make([]string, 0, len(j.claim.DependencyResults))
	for name := range j.claim.DependencyResults {
		deps = append(deps, name)
	}
	slices.Sort(deps)
	attrs := []attribute.KeyValue{
		AttrTaskID.Int64(j.claim.TaskID), AttrStepID.Int64(j.claim.StepID), AttrStepName.String(j.claim.StepName),
		AttrHandler.String(j.claim.Handler), AttrAttempt.Int(j.claim.Attempt), AttrQueue.String(j.queue),
		AttrWorkerID.String(j.w.cfg.ID), AttrDependencies.StringSlice(deps),
	}
	if !j.claim.ReadyAt.IsZero() {
		attrs = append(attrs, AttrQueueWait.Float64(max(0, float64(now.Sub(j.claim.ReadyAt).Microseconds())/1000)))
	}
	_, j.span = t.Start(parent, "step "+j.claim.StepName, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(now), trace.WithAttributes(attrs...))
}

// endSpan ends j's span (if it traces) with the attempt's outcome; err, if any, is the handler's error or the
// reason the outcome is what it is.
func (j *job) endSpan(outcome string, err error) {
	if j.span == nil {
		return
	}
	j.span.SetAttributes(AttrOutcome.String(outcome))
	if err != nil {
		j.span.RecordError(err)
	}
	if outcome != OutcomeSucceeded {
		msg := outcome
		if err != nil {
			msg = err.Error()
		}
		j.span.SetStatus(codes.Error, msg)
	}
	j.span.End()
	j.span = nil
}
