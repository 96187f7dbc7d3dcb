-- Shared by resolve_step and complete_step: finishes a step by hand (p_target 'resolved' or 'succeeded').
CREATE OR REPLACE FUNCTION tasker._finish_step_manually(p_task_id bigint, p_step_name text, p_target text, p_result jsonb,
                                             p_reason text)
RETURNS TABLE (status text, detail text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_task_state text;
    s            tasker.steps%ROWTYPE;
BEGIN
    PERFORM tasker._lock_tasks(ARRAY[p_task_id]); -- freezes the task (locks.sql)
    SELECT t.state INTO v_task_state FROM tasker.tasks AS t WHERE t.id = p_task_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'task_not_found'::text, format('task %s not found', p_task_id);
        RETURN;
    END IF;
    SELECT * INTO s FROM tasker.steps AS x WHERE x.task_id = p_task_id AND x.name = p_step_name;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'step_not_found'::text, format('task %s has no step %s', p_task_id,
                                                          quote_nullable(p_step_name));
        RETURN;
    END IF;
    IF s.state = p_target THEN
        RETURN QUERY SELECT 'noop'::text, format('step %s is already %s', s.name, s.state);
        RETURN;
    END IF;
    IF s.state IN ('succeeded', 'resolved') THEN
        RETURN QUERY SELECT 'invalid_transition'::text, format('step %s is already %s', s.name, s.state);
        RETURN;
    END IF;
    IF s.state = 'omitted' THEN -- its children went on already
        RETURN QUERY SELECT 'invalid_transition'::text, format('step %s was omitted: its condition was false', s.name);
        RETURN;
    END IF;
    IF v_task_state = 'cancelled' THEN
        RETURN QUERY SELECT 'invalid_transition'::text, format('task %s is cancelled', p_task_id);
        RETURN;
    END IF;

    IF s.state IN ('enqueued', 'running', 'retrying') THEN
        PERFORM tasker._delete_messages(s.queue, ARRAY[s.msg_id]);
    END IF;
    IF s.child_size IS NOT NULL THEN -- a child workflow step: its child's steps go (children.sql)
        PERFORM tasker._delete_child_steps(s.id);
    END IF;
    IF s.child_of IS NOT NULL AND s.state = 'failed' THEN -- the child workflow steps that failed with it go on
        PERFORM tasker._child_resumed(s.id, format('step %s of its child workflow %s manually', s.name, p_target));
    END IF;
    UPDATE tasker.steps AS x
    SET state = p_target, result = CASE WHEN p_target = 'succeeded' THEN p_result ELSE x.result END,
        result_bytes = CASE WHEN p_target = 'succeeded' THEN tasker._large_result_bytes(p_result) ELSE x.result_bytes END,
        finished_at = clock_timestamp(), lease_expires_at = NULL, next_attempt_at = NULL,
        updated_at = clock_timestamp()
    WHERE x.id = s.id;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
    VALUES (s.task_id, s.id, s.state, p_target, s.attempts, p_reason, jsonb_build_object('manual', true));

    PERFORM tasker._release_children(ARRAY[s.id], v_task_state IN ('pending', 'running'));
    IF s.state IN ('pending', 'enqueued', 'running', 'retrying', 'waiting', 'mapping') THEN
        PERFORM tasker._count_finished(ARRAY[p_task_id]);
    END IF;
    IF v_task_state = 'failed' THEN
        PERFORM tasker._reopen_task(p_task_id, format('step %s %s manually', s.name, p_target));
    END IF;
    PERFORM pg_notify('tasker_task', p_task_id::text);
    RETURN QUERY SELECT 'ok'::text, format('step %s %s', s.name, p_target);
END;
$fn$;

-- Marks a step resolved by hand: it counts as done for its children (which proceed), without a result. A failed
-- task whose failed steps are all dealt with resumes.
CREATE OR REPLACE FUNCTION tasker.resolve_step(task_id bigint, step_name text, reason text DEFAULT NULL)
RETURNS TABLE (status text, detail text)
LANGUAGE sql AS $fn$
    SELECT r.status, r.detail
    FROM tasker._finish_step_manually(resolve_step.task_id, resolve_step.step_name, 'resolved', NULL,
                                      coalesce(resolve_step.reason, 'resolved manually'))
         AS r
$fn$;

-- Completes a step by hand with the given result, as if its handler had returned it.
CREATE OR REPLACE FUNCTION tasker.complete_step(task_id bigint, step_name text, result jsonb, reason text DEFAULT NULL)
RETURNS TABLE (status text, detail text)
LANGUAGE sql AS $fn$
    SELECT r.status, r.detail
    FROM tasker._finish_step_manually(complete_step.task_id, complete_step.step_name, 'succeeded',
                                      complete_step.result, coalesce(complete_step.reason, 'completed manually'))
         AS r
$fn$;
