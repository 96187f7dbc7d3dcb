-- The id of the task admitted with an external key (TaskIDByKey).
SELECT t.id FROM tasker.tasks AS t WHERE t.external_key = $1::text
