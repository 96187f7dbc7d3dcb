-- A task's history, oldest first: its own transitions (step NULL) and its steps' ($2: one step's only).
SELECT h.at, h.step, h.from_state, h.to_state, h.attempt, h.worker_id, h.reason, h.metadata
FROM (
    SELECT x.at, x.id, s.name AS step, x.from_state, x.to_state, x.attempt, x.worker_id, x.reason, x.metadata
    FROM tasker.step_transitions AS x
    JOIN tasker.steps AS s ON s.id = x.step_id
    WHERE x.task_id = $1 AND ($2::text IS NULL OR s.name = $2::text)
    UNION ALL
    SELECT t.at, t.id, NULL, t.from_state, t.to_state, NULL, NULL, t.reason, t.metadata
    FROM tasker.task_transitions AS t
    WHERE t.task_id = $1 AND $2::text IS NULL
) AS h
ORDER BY h.at, h.step NULLS FIRST, h.id
