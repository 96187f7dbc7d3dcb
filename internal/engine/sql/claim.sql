SELECT c.step_id, c.task_id, c.step_name, c.handler, c.inputs, c.task_context, c.dependency_results, c.attempt,
       c.lease, c.timeout_seconds, c.lease_expires_at, c.item, c.item_index, c.trace_context, c.ready_at
FROM tasker.claim($1::text, $2::integer, $3::integer, $4::text) AS c
