CREATE OR REPLACE FUNCTION tasker.retry_step(task_id bigint, step_name text, reason text DEFAULT NULL, inputs jsonb DEFAULT NULL)
RETURNS TABLE (status text, detail text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_task_state text;
    s            tasker.steps%ROWTYPE;
BEGIN
    PERFORM tasker._lock_tasks(ARRAY[retry_step.task_id]); -- freezes the task (locks.sql)
    SELECT t.state INTO v_task_state FROM tasker.tasks AS t WHERE t.id = retry_step.task_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'task_not_found'::text, format('task %s not found', retry_step.task_id);
        RETURN;
    END IF;
    SELECT * INTO s FROM tasker.steps AS x WHERE x.task_id = retry_step.task_id AND x.name = retry_step.step_name;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'step_not_found'::text, format('task %s has no step %s', retry_step.task_id,
                                                          quote_nullable(retry_step.step_name));
        RETURN;
    END IF;
    IF v_task_state = 'cancelled' THEN
        RETURN QUERY SELECT 'invalid_transition'::text, format('task %s is cancelled', retry_step.task_id);
        RETURN;
    END IF;
    IF s.state IN ('enqueued', 'running', 'retrying', 'waiting') THEN
        RETURN QUERY SELECT 'noop'::text, format('step %s is already %s', s.name, s.state);
        RETURN;
    END IF;
    IF s.state = 'mapping' THEN
        RETURN QUERY SELECT 'noop'::text, format('step %s is already mapping: its instances run', s.name);
        RETURN;
    END IF;
    IF s.state = 'failed' AND s.for_each IS NOT NULL THEN -- maps.sql: the same document gives the same items
        RETURN QUERY SELECT 'invalid_transition'::text,
                            format('step %s failed gathering or expanding its forEach, which a retry would repeat: '
                                   'complete or resolve it instead', s.name);
        RETURN;
    END IF;
    IF s.state <> 'failed' THEN
        RETURN QUERY SELECT 'invalid_transition'::text,
                            format('step %s is %s: only a failed step can be retried', s.name, s.state);
        RETURN;
    END IF;

    IF s.child IS NOT NULL AND s.for_each IS NULL THEN -- a child workflow step: its child runs again (children.sql)
        PERFORM tasker._discard_child(s.id, coalesce(retry_step.reason, 'retried manually')
                                            || ': its child workflow runs again');
    END IF;
    IF s.child_of IS NOT NULL THEN -- a step of a child workflow: the steps that failed with it wait for it again
        PERFORM tasker._child_resumed(s.id, format('step %s of its child workflow retried manually', s.name));
    END IF;
    UPDATE tasker.steps AS x
    SET retry_base = x.attempts,
        inputs = CASE WHEN retry_step.inputs IS NULL THEN x.inputs ELSE retry_step.inputs END
    WHERE x.id = s.id;
    PERFORM tasker._enqueue(ARRAY[s.id], coalesce(retry_step.reason, 'retried manually')
        || CASE WHEN retry_step.inputs IS NULL THEN '' ELSE ' with new inputs' END);
    IF v_task_state = 'failed' THEN
        PERFORM tasker._reopen_task(retry_step.task_id, format('step %s retried manually', s.name));
    ELSE
        UPDATE tasker.tasks AS t SET unfinished_steps = t.unfinished_steps + 1, updated_at = clock_timestamp()
        WHERE t.id = retry_step.task_id;
    END IF;
    IF s.wait_signal IS NOT NULL THEN -- waits again: a signal sent meanwhile completes it now (waits.sql)
        PERFORM tasker._apply_kept_signals(retry_step.task_id);
    END IF;
    PERFORM pg_notify('tasker_task', retry_step.task_id::text);
    RETURN QUERY SELECT 'ok'::text, format('step %s enqueued', s.name);
END;
$fn$;
