-- Every step of a task, in spec order, with the names of its dependencies.
SELECT s.id, s.name, s.handler, s.queue, s.state, s.attempts, s.max_attempts, s.result, s.last_error,
       s.worker_id, s.next_attempt_at, s.lease_expires_at, s.created_at, s.started_at, s.finished_at, s.updated_at,
       coalesce((SELECT array_agg(p.name ORDER BY p.id)
                 FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                 WHERE e.child_id = s.id), '{}'::text[])
FROM tasker.steps AS s
WHERE s.task_id = $1::bigint
ORDER BY s.id
