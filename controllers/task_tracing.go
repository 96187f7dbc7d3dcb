// Tracing of Task reconciles (docs/tracing.md).

package controllers

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// TracerName is the instrumentation scope of the controllers' spans.
const TracerName = "github.com/tasker-operator/tasker-operator/controllers"

// w3c is the format of the trace context stored with a task and of the traceparent annotation.
var w3c = propagation.TraceContext{}

// taskTraceKey is the context key of the trace context admission stores with the task (taskTrace).
type taskTraceKey struct{}

// Attributes of the operator's spans.
var (
	attrNamespace = attribute.Key("k8s.namespace.name")
	attrTaskName  = attribute.Key("tasker.task.name")
	attrTaskUID   = attribute.Key("tasker.task.uid")
	attrTaskID    = attribute.Key("tasker.task.id")
)

// traceReconcile starts the span of a Task's reconcile, with the global tracer provider (a no-op unless the
// manager set one up), and returns the context to reconcile in and the function that ends the span(s) with the
// reconcile's error.
//
// A Task not admitted yet (as far as its status and this reconciler know) starts its trace here: the task span "task <ns>/<name>",
// the root of the Task's trace — or a child of the span its traceparent annotation names — with the reconcile as
// its child; admission stores the task span's context with the task, so that every step attempt's span is its
// child too (workers read it from their claims). Later reconciles are traces of their own, linked to the task's
// (the link is added once the task's state is read: see linkTaskTrace): a Task that runs for days would otherwise
// pile thousands of status reconciles into its trace.
func (r *TaskReconciler) traceReconcile(ctx context.Context, task *taskerv1alpha1.Task) (context.Context, func(error)) {
	tracer := otel.Tracer(TracerName)
	attrs := []attribute.KeyValue{attrNamespace.String(task.Namespace), attrTaskName.String(task.Name),
		attrTaskUID.String(string(task.UID))}
	var taskSpan trace.Span
	if r.maybeUnadmitted(task) && task.DeletionTimestamp.IsZero() && !finished(task.Status.Phase) {
		parent := w3c.Extract(trace.ContextWithSpanContext(ctx, trace.SpanContext{}), propagation.MapCarrier{
			"traceparent": task.Annotations[taskerv1alpha1.TraceParentAnnotation],
			"tracestate":  task.Annotations[taskerv1alpha1.TraceStateAnnotation],
		})
		ctx, taskSpan = tracer.Start(parent, "task "+task.Namespace+"/"+task.Name, trace.WithAttributes(attrs...))
		carrier := propagation.MapCarrier{}
		w3c.Inject(ctx, carrier)
		if len(carrier) > 0 {
			ctx = context.WithValue(ctx, taskTraceKey{}, map[string]string(carrier))
		}
	} else {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	}
	ctx, span := tracer.Start(ctx, "reconcile Task", trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if id := task.Status.TaskID; id != 0 {
			span.SetAttributes(attrTaskID.Int64(id))
		}
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		if taskSpan != nil {
			taskSpan.SetAttributes(attribute.Bool("tasker.task.admitted", task.Status.TaskID != 0))
			if id := task.Status.TaskID; id != 0 {
				taskSpan.SetAttributes(attrTaskID.Int64(id))
			}
			taskSpan.End()
		}
	}
}

// maybeUnadmitted tells whether task may still need admission: its status names no engine task, and this
// reconciler has not admitted or found one for it (status writes are paced: the status may lag).
func (r *TaskReconciler) maybeUnadmitted(task *taskerv1alpha1.Task) bool {
	if task.Status.TaskID != 0 {
		return false
	}
	v, ok := r.ids.Load(client.ObjectKeyFromObject(task))
	return !ok || v.(ownTask).uid != task.UID
}

// taskTrace is the trace context admission stores with the task (nil: none).
func taskTrace(ctx context.Context) map[string]string {
	m, _ := ctx.Value(taskTraceKey{}).(map[string]string)
	return m
}

// linkTaskTrace links the reconcile's span to the trace of the task it read (a reconcile after admission).
func linkTaskTrace(ctx context.Context, traceContext map[string]string) {
	span := trace.SpanFromContext(ctx)
	if len(traceContext) == 0 || !span.IsRecording() {
		return
	}
	if sc := trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.MapCarrier(traceContext))); sc.IsValid() &&
		sc.TraceID() != span.SpanContext().TraceID() {
		span.AddLink(trace.Link{SpanContext: sc})
	}
}
