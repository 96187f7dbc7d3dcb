-- 0018: tracing (docs/tracing.md). A task may carry the W3C trace context of its trace (an object of text
-- propagation fields: {"traceparent": "00-...", "tracestate": "..."}), set by tasker.admit from the spec's
-- trace_context and returned by every claim of the task's steps, so that each step attempt's span joins the task's
-- trace. NULL (the default, and with tracing off) costs nothing: not indexed, never updated after admission.
ALTER TABLE tasker.tasks ADD COLUMN trace_context jsonb;
COMMENT ON COLUMN tasker.tasks.trace_context IS
    'W3C trace context of the task''s trace ({"traceparent", "tracestate"}), handed to workers by claim; NULL: none';

-- claim and complete_and_claim return two more columns (trace_context, ready_at): their result types change, so
-- the old definitions go and functions/claim.sql and complete.sql define the new ones. _claimed gains an argument.
DROP FUNCTION IF EXISTS tasker.claim(text, integer, integer, text);
DROP FUNCTION IF EXISTS tasker_internal.claim(text, integer, integer, text);
DROP FUNCTION IF EXISTS tasker.complete_and_claim(uuid[], jsonb[], integer, integer, text);
DROP FUNCTION IF EXISTS tasker_internal.complete_and_claim(uuid[], jsonb[], integer, integer, text);
DROP FUNCTION IF EXISTS tasker._claimed(bigint[]);
