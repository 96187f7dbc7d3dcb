-- Waits and signals (migration 0014). A step with a wait_signal runs no handler: when it becomes ready it waits
-- ('waiting', no message) for tasker.signal(task, name, payload), which completes it with the payload as its
-- result; a signal sent before the step waits is kept and completes it as soon as it becomes ready. A wait with a
-- timeout that passes is a failed attempt (upkeep): the retry policy applies, and a retry waits again.

-- Starts the waits of p_step_ids (ready steps with a wait_signal: pending, or failed and retried by an operator)
-- and completes at once those whose signal has arrived; returns the children that became ready. The caller holds
-- the tasks' lock sets (_enqueue).
CREATE OR REPLACE FUNCTION tasker._start_waits(p_step_ids bigint[], p_reason text) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    r       record;
    v_ready bigint[] := '{}';
BEGIN
    -- Signalled already: done now, one signal at a time (each has its payload). Not a failed step an operator
    -- retries: its task's counts are settled after this (retry_step), which then applies the kept signal.
    FOR r IN SELECT g.task_id, g.name, array_agg(s.id ORDER BY s.id) AS ids
             FROM tasker.steps AS s
             JOIN tasker.signals AS g ON g.task_id = s.task_id AND g.name = s.wait_signal
             WHERE s.id = ANY (p_step_ids) AND s.state = 'pending'
             GROUP BY g.task_id, g.name LOOP
        v_ready := v_ready || tasker._complete_waits(r.ids, r.task_id, r.name);
    END LOOP;
    WITH o AS (
        SELECT s.id, s.state FROM tasker.steps AS s WHERE s.id = ANY (p_step_ids) AND s.state IN ('pending', 'failed')
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'waiting', attempts = s.attempts + 1, started_at = clock_timestamp(), finished_at = NULL,
            next_attempt_at = CASE WHEN s.wait_timeout_seconds > 0
                                   THEN clock_timestamp() + s.wait_timeout_seconds * interval '1 second' END,
            updated_at = clock_timestamp()
        FROM o WHERE s.id = o.id
        RETURNING s.id, s.task_id, s.attempts, s.wait_signal, s.next_attempt_at, o.state AS from_state
    )
    , tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        SELECT u.task_id, u.id, u.from_state, 'waiting', u.attempts, p_reason,
               jsonb_build_object('signal', u.wait_signal, 'until', u.next_attempt_at)
        FROM u
    ), started AS ( -- a wait is the task's work starting, as a first claim is
        UPDATE tasker.tasks AS t SET state = 'running', started_at = coalesce(t.started_at, clock_timestamp()),
                                     updated_at = clock_timestamp()
        WHERE t.id IN (SELECT u.task_id FROM u) AND t.state = 'pending'
        RETURNING t.id
    )
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
    SELECT st.id, 'pending', 'running', 'a step waits for a signal' FROM started AS st;
    RETURN v_ready;
END;
$fn$;

-- Completes the waits of p_step_ids (pending or waiting steps of task p_task_id waiting for signal p_signal) with
-- the signal's payload as their result: they succeed, their task counts them, their children count them off.
-- Returns the children that became ready. The caller holds the task's lock set.
CREATE OR REPLACE FUNCTION tasker._complete_waits(p_step_ids bigint[], p_task_id bigint, p_signal text)
RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids bigint[];
BEGIN
    WITH g AS (
        SELECT x.payload, x.reason FROM tasker.signals AS x WHERE x.task_id = p_task_id AND x.name = p_signal
    ), o AS (
        SELECT s.id, s.state FROM tasker.steps AS s
        WHERE s.id = ANY (p_step_ids) AND s.state IN ('pending', 'failed', 'waiting') AND s.wait_signal = p_signal
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'succeeded', result = (SELECT g.payload FROM g), finished_at = clock_timestamp(),
            next_attempt_at = NULL, started_at = coalesce(s.started_at, clock_timestamp()),
            updated_at = clock_timestamp()
        FROM o WHERE s.id = o.id
        RETURNING s.id, s.task_id, s.attempts, o.state AS from_state
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        SELECT u.task_id, u.id, u.from_state, 'succeeded', u.attempts, format('signal %s received', p_signal),
               jsonb_build_object('signal', p_signal, 'reason', (SELECT g.reason FROM g))
        FROM u
    )
    SELECT array_agg(u.id) INTO v_ids FROM u;
    IF v_ids IS NULL THEN
        RETURN '{}';
    END IF;
    PERFORM tasker._count_finished(array_fill(p_task_id, ARRAY[cardinality(v_ids)]));
    RETURN tasker._count_off_children(v_ids);
END;
$fn$;

-- Sends the signal p_signal to a task: it completes every step of the task waiting for it (their result is
-- p_payload), and is kept for the steps that wait for it later (the first signal of a name counts; another is a
-- noop). Returns (status, detail) as the operator functions do: ok, noop (sent already), task_not_found, or
-- invalid_transition (the task succeeded or was cancelled). A failed task keeps the signal for when it resumes.
CREATE OR REPLACE FUNCTION tasker.signal(task_id bigint, signal text, payload jsonb DEFAULT NULL,
                                         reason text DEFAULT NULL)
RETURNS TABLE (status text, detail text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_state text;
    v_ids   bigint[];
    v_ready bigint[];
BEGIN
    IF signal.signal IS NULL OR signal.signal !~ '^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$' THEN
        RAISE EXCEPTION 'signal: % is not a valid signal name (lower-case letters, digits, - _ ., at most 63)',
            quote_nullable(signal.signal) USING ERRCODE = '22023';
    END IF;
    PERFORM tasker._lock_tasks(ARRAY[signal.task_id]);
    SELECT t.state INTO v_state FROM tasker.tasks AS t WHERE t.id = signal.task_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'task_not_found'::text, format('task %s not found', signal.task_id);
        RETURN;
    END IF;
    IF v_state IN ('succeeded', 'cancelled') THEN
        RETURN QUERY SELECT 'invalid_transition'::text, format('task %s is %s', signal.task_id, v_state);
        RETURN;
    END IF;
    INSERT INTO tasker.signals AS g (task_id, name, payload, reason)
    VALUES (signal.task_id, signal.signal, signal.payload, signal.reason)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'noop'::text, format('signal %s was sent to task %s already', signal.signal, signal.task_id);
        RETURN;
    END IF;
    v_ids := ARRAY(SELECT s.id FROM tasker.steps AS s
                   WHERE s.task_id = signal.task_id AND s.state = 'waiting' AND s.wait_signal = signal.signal);
    IF cardinality(v_ids) > 0 THEN
        v_ready := tasker._complete_waits(v_ids, signal.task_id, signal.signal);
        IF cardinality(v_ready) > 0 AND v_state IN ('pending', 'running') THEN
            PERFORM tasker._enqueue(v_ready, 'dependencies finished');
        END IF;
    END IF;
    PERFORM pg_notify('tasker_task', signal.task_id::text);
    RETURN QUERY SELECT 'ok'::text, CASE WHEN cardinality(v_ids) > 0
                                         THEN format('%s step(s) waiting for %s continued', cardinality(v_ids), signal.signal)
                                         ELSE format('signal %s kept: no step waits for it yet', signal.signal) END;
END;
$fn$;

-- Completes the waiting steps of a task whose signal was sent already (retry_step, once the task is running
-- again), and enqueues what they made ready. The caller holds the task's lock set.
CREATE OR REPLACE FUNCTION tasker._apply_kept_signals(p_task_id bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    r       record;
    v_ready bigint[] := '{}';
BEGIN
    FOR r IN SELECT g.name, array_agg(s.id ORDER BY s.id) AS ids
             FROM tasker.steps AS s
             JOIN tasker.signals AS g ON g.task_id = s.task_id AND g.name = s.wait_signal
             WHERE s.task_id = p_task_id AND s.state = 'waiting'
             GROUP BY g.name LOOP
        v_ready := v_ready || tasker._complete_waits(r.ids, p_task_id, r.name);
    END LOOP;
    IF cardinality(v_ready) > 0 THEN
        PERFORM tasker._enqueue(v_ready, 'dependencies finished');
    END IF;
END;
$fn$;

-- A wait past its timeout (upkeep, under the task's lock set): waits again while attempts are left (a new
-- deadline, reason 'wait timed out'), else fails the step and its task.
CREATE OR REPLACE FUNCTION tasker._time_out_wait(p_step_id bigint, p_now timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    s       tasker.steps%ROWTYPE;
    v_error jsonb;
BEGIN
    SELECT * INTO s FROM tasker.steps AS x WHERE x.id = p_step_id AND x.state = 'waiting' AND x.next_attempt_at <= p_now;
    IF NOT FOUND THEN
        RETURN false; -- signalled, resolved or cancelled meanwhile
    END IF;
    v_error := jsonb_build_object('message', format('no signal %s within %s seconds', s.wait_signal,
                                                    s.wait_timeout_seconds), 'timeout', true);
    IF s.attempts - s.retry_base < s.max_attempts THEN
        UPDATE tasker.steps AS x
        SET attempts = x.attempts + 1, last_error = v_error, started_at = clock_timestamp(),
            next_attempt_at = clock_timestamp() + x.wait_timeout_seconds * interval '1 second',
            updated_at = clock_timestamp()
        WHERE x.id = s.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        VALUES (s.task_id, s.id, 'waiting', 'waiting', s.attempts + 1, 'wait timed out', jsonb_build_object('error', v_error));
        RETURN true;
    END IF;
    UPDATE tasker.steps AS x
    SET state = 'failed', last_error = v_error, finished_at = clock_timestamp(), next_attempt_at = NULL,
        updated_at = clock_timestamp()
    WHERE x.id = s.id;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
    VALUES (s.task_id, s.id, 'waiting', 'failed', s.attempts, 'wait timed out (attempts exhausted)',
            jsonb_build_object('error', v_error));
    PERFORM tasker._stop_task(s.task_id, 'failed', s.id, format('step %s failed', s.name));
    RETURN true;
END;
$fn$;
