-- Tasks and steps by state, for the operator's metrics. One round trip; the operator caches the answer, so this
-- runs at most every few seconds however often Prometheus scrapes.
SELECT 'task' AS kind, state::text, count(*) FROM tasker.tasks GROUP BY state
UNION ALL
SELECT 'step' AS kind, state::text, count(*) FROM tasker.steps GROUP BY state
