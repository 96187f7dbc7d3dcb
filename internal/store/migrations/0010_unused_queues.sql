-- 0010: queues no step uses any more are dropped (tasker.drop_unused_queues, run with upkeep).
--
-- Queue names became each namespace's own (docs/tenancy.md), so queues come and go with namespaces; without this
-- their pgmq tables would stay forever. Only queues tasker created itself are dropped: a queue that existed in
-- pgmq before tasker used it (someone else's) is not tasker's to drop, and neither are the queues recorded before
-- this migration, whose origin is not known (they stay; drop them by hand once unused).

ALTER TABLE tasker.queues ADD COLUMN created_by_tasker boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN tasker.queues.created_by_tasker IS
    'tasker created the pgmq queue (it did not exist before): drop_unused_queues may drop it once no step uses it';

-- Which queues a step still uses. The queue of a step never changes, so the index costs an insert per step at
-- admission and nothing on the hot path (claims and completions stay HOT updates).
CREATE INDEX steps_queue_idx ON tasker.steps (queue);
