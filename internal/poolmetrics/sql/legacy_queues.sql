-- Of the queue names $2 (a pool's queues under their own, un-namespaced names), those that still hold unfinished
-- steps of unfinished tasks of namespace $1: steps admitted before queues were namespaced, which the pool's
-- workers must still drain. Reads the active tasks through tasks_active_idx, then their steps.
SELECT DISTINCT s.queue
FROM tasker.tasks AS t
JOIN tasker.steps AS s ON s.task_id = t.id
WHERE t.completed_at IS NULL
  AND t.namespace = $1
  AND s.queue = ANY ($2::text[])
  AND s.state IN ('pending', 'enqueued', 'running', 'retrying')
ORDER BY 1
