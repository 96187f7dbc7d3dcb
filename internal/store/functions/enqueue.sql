-- Sends a message for each step and moves it to enqueued (from pending, failed, ...), recording transitions.
CREATE OR REPLACE FUNCTION tasker._enqueue(p_step_ids bigint[], p_reason text) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids    bigint[];
    v_queues text[];
    v_tasks  bigint[];
    v_att    integer[];
    v_states text[];
    v_msgs   bigint[];
BEGIN
    SELECT array_agg(s.id), array_agg(s.queue), array_agg(s.task_id), array_agg(s.attempts + 1), array_agg(s.state)
    INTO v_ids, v_queues, v_tasks, v_att, v_states
    FROM tasker.steps AS s WHERE s.id = ANY (p_step_ids);
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    v_msgs := tasker._send_for(v_queues, v_tasks, v_ids, v_att);
    WITH c AS MATERIALIZED (
        SELECT x.id, x.msg_id, x.from_state FROM unnest(v_ids, v_msgs, v_states) AS x (id, msg_id, from_state)
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'enqueued', msg_id = c.msg_id, finished_at = NULL, next_attempt_at = NULL,
            lease_expires_at = NULL, updated_at = clock_timestamp()
        FROM c
        WHERE s.id = c.id
        RETURNING s.id, s.task_id, s.attempts, c.from_state
    )
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
    SELECT u.task_id, u.id, u.from_state, 'enqueued', u.attempts, p_reason FROM u;
    RETURN cardinality(v_ids);
END;
$fn$;

-- Counts steps that just became succeeded or resolved off their children, and enqueues the children that became
-- ready when p_enqueue (their task is active). Used by the operator actions (one step); complete_many inlines a
-- batch-friendly version of the same.
CREATE OR REPLACE FUNCTION tasker._release_children(p_step_ids bigint[], p_enqueue boolean) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_children bigint[];
    v_ready    bigint[];
BEGIN
    v_children := ARRAY(SELECT DISTINCT e.child_id FROM tasker.step_edges AS e WHERE e.parent_id = ANY (p_step_ids));
    IF cardinality(v_children) = 0 THEN
        RETURN;
    END IF;
    WITH u AS (
        UPDATE tasker.steps AS c
        SET remaining_parents = c.remaining_parents
                                - (SELECT count(*) FROM tasker.step_edges AS e
                                   WHERE e.child_id = c.id AND e.parent_id = ANY (p_step_ids))::integer,
            updated_at = clock_timestamp()
        WHERE c.id = ANY (v_children)
        RETURNING c.id, c.state, c.remaining_parents
    )
    SELECT array_agg(u.id) FILTER (WHERE u.remaining_parents = 0 AND u.state = 'pending') INTO v_ready FROM u;
    IF p_enqueue AND v_ready IS NOT NULL THEN
        PERFORM tasker._enqueue(v_ready, 'dependencies finished');
    END IF;
END;
$fn$;

-- Each occurrence of a task id in p_task_ids is one of its steps that just left the unfinished states; a task with
-- none left succeeds. Used by the operator actions (a step at a time); complete_many inlines a batch version.
CREATE OR REPLACE FUNCTION tasker._count_finished(p_task_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids    bigint[];
    v_counts integer[];
    v_states text[];
BEGIN
    SELECT array_agg(d.id), array_agg(d.n), array_agg(t.state) INTO v_ids, v_counts, v_states
    FROM (SELECT x.id, count(*)::integer AS n FROM unnest(p_task_ids) AS x (id) GROUP BY x.id) AS d
    JOIN tasker.tasks AS t ON t.id = d.id
    WHERE t.id = ANY (p_task_ids);

    WITH u AS (
        UPDATE tasker.tasks AS t
        SET unfinished_steps = t.unfinished_steps - v_counts[array_position(v_ids, t.id)],
            state = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                              AND t.state IN ('pending', 'running') THEN 'succeeded' ELSE t.state END,
            started_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                              THEN coalesce(t.started_at, clock_timestamp()) ELSE t.started_at END,
            completed_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                                     AND t.state IN ('pending', 'running')
                                THEN clock_timestamp() ELSE t.completed_at END,
            expires_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                                   AND t.state IN ('pending', 'running')
                              THEN clock_timestamp() + t.retention ELSE t.expires_at END,
            updated_at = clock_timestamp()
        WHERE t.id = ANY (v_ids)
        RETURNING t.id, t.state
    )
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
    SELECT u.id, v_states[array_position(v_ids, u.id)], u.state, 'all steps finished'
    FROM u WHERE u.state <> v_states[array_position(v_ids, u.id)];
END;
$fn$;
