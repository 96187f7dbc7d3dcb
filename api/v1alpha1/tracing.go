package v1alpha1

// Annotations of a Task that carry a trace (docs/tracing.md).
const (
	// TraceParentAnnotation, on a Task, is a W3C traceparent ("00-<trace id>-<span id>-<flags>"): the Task's
	// trace continues it, so the pipeline that created the Task sees the Task's spans under its own. Read at
	// admission only; an invalid value is ignored (the Task gets a trace of its own).
	TraceParentAnnotation = "tasker.dev/traceparent"
	// TraceStateAnnotation is the W3C tracestate that goes with TraceParentAnnotation (optional).
	TraceStateAnnotation = "tasker.dev/tracestate"
)
