-- One step's inputs (NULL when it has none), found by task id and step name.
SELECT s.inputs
FROM tasker.steps AS s
WHERE s.task_id = $1::bigint AND s.name = $2::text
