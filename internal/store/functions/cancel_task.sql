CREATE OR REPLACE FUNCTION tasker.cancel_task(task_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (status text, detail text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_state  text;
    v_queues text[];
    v_msgs   bigint[];
BEGIN
    -- Before any lock: delete the messages of the task's live steps (see the lock order above); a message sent
    -- after this read is deleted under the lock by _stop_task.
    SELECT array_agg(s.queue), array_agg(s.msg_id) INTO v_queues, v_msgs
    FROM tasker.steps AS s
    WHERE s.task_id = cancel_task.task_id AND s.state IN ('enqueued', 'running', 'retrying');
    IF v_msgs IS NOT NULL THEN
        PERFORM tasker._delete_messages_wait(v_queues, v_msgs);
    END IF;
    PERFORM tasker._lock_tasks(ARRAY[cancel_task.task_id]); -- freezes the task (locks.sql)
    SELECT t.state INTO v_state FROM tasker.tasks AS t WHERE t.id = cancel_task.task_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'task_not_found'::text, format('task %s not found', cancel_task.task_id);
        RETURN;
    END IF;
    IF v_state NOT IN ('pending', 'running') THEN
        RETURN QUERY SELECT 'noop'::text, format('task %s is already %s', cancel_task.task_id, v_state);
        RETURN;
    END IF;
    PERFORM tasker._stop_task(cancel_task.task_id, 'cancelled', NULL, coalesce(cancel_task.reason, 'cancelled'));
    RETURN QUERY SELECT 'ok'::text, format('task %s cancelled', cancel_task.task_id);
END;
$fn$;
