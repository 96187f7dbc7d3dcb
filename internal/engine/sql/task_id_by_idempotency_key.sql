-- The id of the task admitted in a namespace with an idempotency key (TaskIDByIdempotencyKey).
SELECT t.id FROM tasker.tasks AS t WHERE t.namespace = $1::text AND t.idempotency_key = $2::text
