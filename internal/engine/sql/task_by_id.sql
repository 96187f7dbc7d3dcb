-- A task row for status (GetTask; TaskByKey: the same by external key, engine.go's byExternalKey).
SELECT t.id, t.external_key, t.namespace, t.name, t.queue, t.priority, t.context, t.state, t.step_count,
       t.unfinished_steps, extract(epoch FROM t.retention)::double precision, t.created_at, t.started_at,
       t.completed_at, t.expires_at, t.updated_at, t.trace_context,
       CASE WHEN t.state = 'succeeded' THEN tasker._task_outputs(t.id) END, -- the declared outputs (NULL: none)
       c.group_key, c.waiting, c.ahead, c.max_running, c.running -- flow control: the concurrency group (NULLs: none)
FROM tasker.tasks AS t
LEFT JOIN LATERAL tasker.concurrency_status(t.id) AS c ON true
WHERE t.id = $1::bigint
