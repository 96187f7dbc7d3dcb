-- 0006: priorities, and an index to follow task changes.
--
-- A queue that has ever had a task with a priority other than 0 is "prioritized": its messages
-- carry the task's priority, it has an index on (priority desc, msg_id), and claims read it in that order
-- (functions/claim.sql). Queues whose tasks all have priority 0 keep pgmq's plain FIFO read and pay nothing.
ALTER TABLE tasker.queues ADD COLUMN prioritized boolean NOT NULL DEFAULT false;

-- The operator follows task-level changes (started, finished, resumed) by reading tasker.task_transitions in id
-- order (Engine.TaskChanges) instead of being notified by the workers' transactions.
CREATE INDEX task_transitions_id_idx ON tasker.task_transitions (id);
