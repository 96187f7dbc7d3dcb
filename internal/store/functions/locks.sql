-- Lock order. Every function that changes state follows it, which is what keeps the protocol deadlock-free:
-- task rows (FOR NO KEY UPDATE, ascending id) before step rows. Queue messages: a transaction that holds task or
-- step locks never waits for a message lock (it deletes or re-times messages with SKIP LOCKED). Messages a call
-- knows it must delete (complete, fail, cancel) are deleted first, waiting if need be, while it holds no task or
-- step lock. Claims hold message locks (pgmq.read) while waiting for task locks. Hence no cycle, no deadlock
-- between protocol calls. A message skipped by a SKIP LOCKED delete is stale (its step's msg_id no longer names
-- it, or the step is finished): the claim that eventually reads it deletes it.

-- Locks tasks in ascending id order (the global lock order).
CREATE OR REPLACE FUNCTION tasker._lock_tasks(p_task_ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg(l.id) INTO v_ids
    FROM (SELECT t.id FROM tasker.tasks AS t WHERE t.id = ANY (p_task_ids) ORDER BY t.id FOR NO KEY UPDATE OF t) AS l;
    RETURN v_ids;
END;
$fn$;
