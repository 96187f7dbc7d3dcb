-- Every step of a task (by id; by external key: engine.go's byExternalKey), in spec order, with the names of its
-- dependencies and, for a map step (forEach), how many instances it has in each state; not the instances themselves. The steps of child workflows
-- follow (named "<step>/<child step>"), and a child workflow step has its template and how many of its child's
-- steps are in each state.
SELECT s.id, s.name, s.handler, s.queue, s.state, s.attempts, s.max_attempts, s.result, s.last_error,
       s.worker_id, s.next_attempt_at, s.lease_expires_at, s.created_at, s.started_at, s.finished_at, s.updated_at,
       coalesce((SELECT array_agg(p.name ORDER BY p.id)
                 FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                 WHERE e.child_id = s.id AND p.map_step_id IS NULL
                   AND p.child_of IS NOT DISTINCT FROM s.child_of), '{}'::text[]),
       s.map_size,
       CASE WHEN s.map_size > 0 THEN
           (SELECT jsonb_object_agg(c.state, c.n)
            FROM (SELECT i.state, count(*) AS n FROM tasker.steps AS i WHERE i.map_step_id = s.id GROUP BY i.state) AS c)
       END,
       s.child ->> 'template', s.child_size,
       CASE WHEN s.child_size > 0 THEN
           (SELECT jsonb_object_agg(c.state, c.n)
            FROM (SELECT i.state, count(*) AS n FROM tasker.steps AS i
                  WHERE i.child_of = s.id AND i.map_step_id IS NULL GROUP BY i.state) AS c)
       END,
       CASE WHEN s.child_of IS NOT NULL THEN (SELECT p.name FROM tasker.steps AS p WHERE p.id = s.child_of) END
FROM tasker.steps AS s
WHERE s.task_id = $1::bigint
  AND s.map_step_id IS NULL
  AND strpos(s.name, '[') = 0 -- nor the steps of the instances' child workflows ("<step>[<i>]/...")
ORDER BY s.id
