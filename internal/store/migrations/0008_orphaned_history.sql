-- 0008: the history of tasks deleted outside upkeep (DELETE FROM tasker.tasks by hand) stayed for ever; a trigger
-- now deletes a task's history with it (functions/history.sql). Delete what such deletions left before.
DELETE FROM tasker.step_transitions AS x WHERE NOT EXISTS (SELECT FROM tasker.tasks AS t WHERE t.id = x.task_id);
DELETE FROM tasker.task_transitions AS x WHERE NOT EXISTS (SELECT FROM tasker.tasks AS t WHERE t.id = x.task_id);
