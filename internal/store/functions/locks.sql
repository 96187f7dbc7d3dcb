-- Lock order. Every function that changes state follows it, which is what keeps the protocol deadlock-free:
--
--   1. queue messages: a transaction that holds step or task locks never waits for a message lock (it deletes or
--      re-times messages with SKIP LOCKED). Messages a call knows it must delete (complete, fail, cancel) are
--      deleted first, waiting if need be, while it holds no step or task lock; a claim holds the message locks
--      it read while it waits for step locks. A message skipped by a SKIP LOCKED delete is stale (its step's
--      msg_id no longer names it, or the step is finished): the claim that eventually reads it deletes it.
--   2. step rows (FOR NO KEY UPDATE), ascending id, taken together in one statement: by an explicit lock before
--      a decision that must read them under the lock (complete_many's children, whose parent counts it changes;
--      whole tasks in _lock_tasks), or by an update guarded by the state it expects (claim, complete_many's own
--      steps), whose rows come in ascending id order. The children complete_and_claim claims for its caller are
--      among those it locked before deciding: claiming them takes no new lock.
--   3. task rows, ascending id, last: the hot path only updates a task's counters or state at the end of a call
--      (task started, steps counted off, task succeeded), so calls on steps of the same task do not serialise on
--      the task row for the whole call, only for the moment of that update and the commit.
--
-- Flow control (migration 0017) adds two kinds of rows, each at one end of this order:
--
--   0. a limited queue's row in tasker.queue_limits (queue_limits.sql): taken by claims of that queue (and
--      set_queue_limits) before anything else, held until commit; nobody holding another lock waits for it.
--   4. concurrency groups (concurrency.sql) take no group-wide row lock: a finishing task (every statement that
--      finishes tasks calls _concurrency_finished for those with a group; a new one must too) hands its own slot to
--      one waiter under its own rows; releasing a waiter locks that task's steps with NOWAIT, retried for up to
--      100 ms and then skipped (whoever holds them is another release of the group, about to commit, or someone
--      stopping or changing that very task), and, if it finishes at once, its task row. Admissions and the calls
--      that fill free slots (admission, the upkeep's dispatch) serialise per group on a transaction advisory lock
--      taken before anything else, so that CancelInProgress can cancel the group's oldest tasks (2, 3) while it
--      holds it; they then share-lock the group's holders (NOWAIT, retried) to wait for finishes in flight.
--
-- What used to be guarded by the task row lock is guarded by step locks: a fan-in child's parent count is changed
-- under the child's lock (so exactly one parent's completion sees it reach zero and enqueues it), the count of a
-- task's unfinished steps is changed under the task's lock by an UPDATE that sees the latest value (so exactly
-- one call finishes the task), and whatever stops or changes a whole task (cancel, a failure that fails it, the
-- operator's actions, upkeep) locks every step of the task first with _lock_tasks, which freezes it: no claim or
-- completion of any of its steps runs meanwhile, and those that waited see the new step states afterwards. So does
-- a completion of a step some child of which has a condition (steps.conditional_children): omitting the child
-- reaches its own children and the task (conditions.sql), so the whole set is taken first, before any step lock.

-- Locks every step of the given tasks (ascending id), then the tasks (ascending id). For calls that stop or
-- change whole tasks; the caller must hold no step lock yet (the hot path locks only the steps it changes).
CREATE OR REPLACE FUNCTION tasker._lock_tasks(p_task_ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids bigint[];
BEGIN
    PERFORM 1 FROM tasker.steps AS s WHERE s.task_id = ANY (p_task_ids) ORDER BY s.id FOR NO KEY UPDATE OF s;
    SELECT array_agg(l.id) INTO v_ids
    FROM (SELECT t.id FROM tasker.tasks AS t WHERE t.id = ANY (p_task_ids) ORDER BY t.id FOR NO KEY UPDATE OF t) AS l;
    RETURN v_ids;
END;
$fn$;
