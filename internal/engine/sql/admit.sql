-- Admits a task (see tasker.admit in internal/store/migrations).
SELECT a.task_id, a.created FROM tasker.admit($1::jsonb) AS a
