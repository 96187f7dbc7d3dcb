-- 0016: idempotency keys. A task may carry a key unique in its namespace (a Task's spec.idempotencyKey): admitting
-- another document with the same namespace and key returns that task (created = false), whatever its external
-- key, for as long as the task is kept (retention). Set at admission and never changed, so the index leaves the
-- tasks' updates HOT; tasks without a key are not in it.
ALTER TABLE tasker.tasks ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX tasks_idempotency_key_idx ON tasker.tasks (namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
