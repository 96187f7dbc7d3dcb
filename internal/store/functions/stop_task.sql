-- Finishes a task as failed or cancelled: every unfinished step stops — unless the failed step is of a child
-- workflow that runs again (children.sql). Pending steps below p_failed_step_id (which
-- can never run now) become skipped, every other unfinished step cancelled; their messages are deleted and their
-- leases stop being valid.
CREATE OR REPLACE FUNCTION tasker._stop_task(p_task_id bigint, p_target text, p_failed_step_id bigint, p_reason text)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_from   text;
    v_group  text;
    v_queues text[];
    v_msgs   bigint[];
    r        record;
BEGIN
    -- A step of a child workflow failed: its child workflow's step runs the child again if its retry policy allows,
    -- and the task goes on (children.sql).
    IF p_target = 'failed' AND (SELECT s.child_of IS NOT NULL FROM tasker.steps AS s WHERE s.id = p_failed_step_id)
       AND tasker._child_failed(p_failed_step_id) THEN
        RETURN;
    END IF;
    SELECT t.state INTO v_from FROM tasker.tasks AS t WHERE t.id = p_task_id;

    WITH RECURSIVE below AS (
        SELECT e.child_id AS id FROM tasker.step_edges AS e WHERE e.parent_id = p_failed_step_id
        UNION
        SELECT e.child_id FROM tasker.step_edges AS e JOIN below AS b ON e.parent_id = b.id
    ), o AS (
        SELECT s.id, s.state, s.queue, s.msg_id
        FROM tasker.steps AS s
        WHERE s.task_id = p_task_id AND s.state IN ('pending', 'enqueued', 'running', 'retrying', 'waiting', 'mapping')
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = CASE WHEN o.state = 'pending' AND o.id IN (SELECT b.id FROM below AS b)
                         THEN 'skipped' ELSE 'cancelled' END,
            finished_at = clock_timestamp(), lease_expires_at = NULL, next_attempt_at = NULL,
            updated_at = clock_timestamp()
        FROM o WHERE s.id = o.id
        RETURNING s.id, s.task_id, s.attempts, s.state AS to_state, o.state AS from_state, o.queue, o.msg_id
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT u.task_id, u.id, u.from_state, u.to_state, u.attempts,
               CASE WHEN u.to_state = 'skipped' THEN 'an upstream step failed' ELSE p_reason END
        FROM u
    )
    SELECT array_agg(u.queue) FILTER (WHERE u.from_state IN ('enqueued', 'running', 'retrying')),
           array_agg(u.msg_id) FILTER (WHERE u.from_state IN ('enqueued', 'running', 'retrying'))
    INTO v_queues, v_msgs
    FROM u;

    FOR r IN SELECT m.queue, array_agg(m.msg_id) AS ids FROM unnest(v_queues, v_msgs) AS m (queue, msg_id)
             GROUP BY m.queue LOOP
        PERFORM tasker._delete_messages(r.queue, r.ids);
    END LOOP;

    UPDATE tasker.tasks AS t
    SET state = p_target, unfinished_steps = 0, completed_at = clock_timestamp(),
        expires_at = clock_timestamp() + t.retention, updated_at = clock_timestamp()
    WHERE t.id = p_task_id
    RETURNING t.concurrency_group INTO v_group;
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
    VALUES (p_task_id, v_from, p_target, p_reason);
    IF v_group IS NOT NULL THEN
        PERFORM tasker._concurrency_finished(ARRAY[p_task_id]); -- flow control (concurrency.sql)
    END IF;
    PERFORM pg_notify('tasker_task', p_task_id::text);
END;
$fn$;

-- A failed task whose failed steps have all been retried, resolved or completed runs again: its skipped and
-- cancelled steps go back to pending (then enqueued as their parents allow) — a map or child workflow step that
-- was expanded already goes back to mapping (gathered once its instances or child have finished: maps.sql,
-- children.sql).
CREATE OR REPLACE FUNCTION tasker._reopen_task(p_task_id bigint, p_reason text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ready      bigint[];
    v_unfinished integer;
    v_to         text;
    v_group      text;
BEGIN
    IF EXISTS (SELECT 1 FROM tasker.steps AS s WHERE s.task_id = p_task_id AND s.state = 'failed') THEN
        RETURN;
    END IF;

    WITH r AS (
        SELECT s.id, s.state,
               (SELECT count(*) FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                WHERE e.child_id = s.id AND p.state NOT IN ('succeeded', 'resolved', 'omitted'))::integer AS remaining
        FROM tasker.steps AS s
        WHERE s.task_id = p_task_id AND s.state IN ('skipped', 'cancelled')
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = CASE WHEN s.map_size > 0 OR s.child_size > 0 THEN 'mapping' ELSE 'pending' END,
            remaining_parents = r.remaining,
            retry_base = s.attempts, finished_at = NULL, updated_at = clock_timestamp()
        FROM r WHERE s.id = r.id
        RETURNING s.id, s.task_id, s.attempts, r.state AS from_state, s.state AS to_state, r.remaining
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT u.task_id, u.id, u.from_state, u.to_state, u.attempts, p_reason FROM u
    )
    SELECT array_agg(u.id) FILTER (WHERE u.remaining = 0) INTO v_ready FROM u;
    -- Map and child workflow steps whose instances or child finished meanwhile (by hand) are gathered.
    v_ready := coalesce(v_ready, '{}') || ARRAY(SELECT s.id FROM tasker.steps AS s
                                                WHERE s.task_id = p_task_id AND s.state = 'mapping'
                                                  AND s.remaining_parents = 0);

    SELECT count(*) INTO v_unfinished FROM tasker.steps AS s
    WHERE s.task_id = p_task_id AND s.state IN ('pending', 'enqueued', 'running', 'retrying', 'waiting', 'mapping');
    v_to := CASE WHEN v_unfinished = 0 THEN 'succeeded' ELSE 'running' END;

    UPDATE tasker.tasks AS t
    SET state = v_to, unfinished_steps = v_unfinished,
        completed_at = CASE WHEN v_to = 'succeeded' THEN clock_timestamp() END,
        expires_at = CASE WHEN v_to = 'succeeded' THEN clock_timestamp() + t.retention END,
        started_at = coalesce(t.started_at, clock_timestamp()), updated_at = clock_timestamp()
    WHERE t.id = p_task_id
    RETURNING t.concurrency_group INTO v_group;
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
    VALUES (p_task_id, 'failed', v_to, p_reason);
    IF v_group IS NOT NULL AND v_to = 'running' THEN
        PERFORM tasker._concurrency_reopened(p_task_id); -- flow control (concurrency.sql)
    END IF;

    IF cardinality(v_ready) > 0 THEN
        PERFORM tasker._enqueue(v_ready, 'task resumed');
    END IF;
END;
$fn$;
