-- The failure path shared by fail, upkeep (timeouts) and claim (a lease expired on the last attempt). The step is
-- running and locked; when the failure is final, every step of its task and the task are locked (_lock_tasks).
-- Retries when allowed (retry_after wins over the backoff policy), else fails the step and its task. A retry's
-- delay counts from the time stamped on its history row.
-- The delay before the retry of step s after its attempt p_attempt (counted from its retry base) failed: its
-- exponential backoff, min(max, base * 2^(attempt - 1)), spread by +/- its jitter, in milliseconds (not rounded).
-- Also the delay before a child workflow runs again (children.sql).
CREATE OR REPLACE FUNCTION tasker._backoff_ms(s tasker.steps, p_attempt integer) RETURNS double precision
LANGUAGE sql VOLATILE AS $fn$
    SELECT least(greatest(least(s.backoff_max_ms::double precision,
                                s.backoff_base_ms * power(2::double precision, least(greatest(p_attempt - 1, 0), 40)))
                          * (1 + s.backoff_jitter * (2 * random() - 1)), 0), s.backoff_max_ms)
$fn$;

CREATE OR REPLACE FUNCTION tasker._fail_running(p_step_id bigint, p_error jsonb, p_retryable boolean,
                                     p_retry_after_seconds double precision, p_reason text)
RETURNS TABLE (status text, next_attempt_at timestamptz)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    s          tasker.steps%ROWTYPE;
    v_attempt  integer;
    v_delay_ms double precision;
    v_at       timestamptz;
    v_msg      bigint;
    v_now      timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO s FROM tasker.steps AS x WHERE x.id = p_step_id;
    v_attempt := s.attempts - s.retry_base;

    IF p_retryable AND v_attempt < s.max_attempts THEN
        IF p_retry_after_seconds IS NOT NULL THEN
            v_delay_ms := least(greatest(p_retry_after_seconds, 0) * 1000, 31536000000.0);
        ELSE
            v_delay_ms := tasker._backoff_ms(s, v_attempt);
        END IF;
        v_delay_ms := round(v_delay_ms);
        v_at := v_now + v_delay_ms * interval '1 millisecond';
        v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1], v_at))[1];
        PERFORM tasker._delete_messages(s.queue, ARRAY[s.msg_id]);
        UPDATE tasker.steps AS x
        SET state = 'retrying', last_error = p_error, msg_id = v_msg, next_attempt_at = v_at,
            lease_expires_at = NULL, updated_at = clock_timestamp()
        WHERE x.id = s.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason,
                                             metadata, at)
        VALUES (s.task_id, s.id, 'running', 'retrying', s.attempts, s.worker_id, p_reason,
                jsonb_build_object('error', p_error, 'delay_ms', v_delay_ms::bigint), v_now);
        RETURN QUERY SELECT 'retrying'::text, v_at;
        RETURN;
    END IF;

    UPDATE tasker.steps AS x
    SET state = 'failed', last_error = p_error, finished_at = clock_timestamp(), lease_expires_at = NULL,
        next_attempt_at = NULL, updated_at = clock_timestamp()
    WHERE x.id = s.id;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason, metadata)
    VALUES (s.task_id, s.id, 'running', 'failed', s.attempts, s.worker_id,
            CASE WHEN p_retryable THEN p_reason || ' (attempts exhausted)' ELSE p_reason END,
            jsonb_build_object('error', p_error));
    PERFORM tasker._delete_messages(s.queue, ARRAY[s.msg_id]);
    PERFORM tasker._stop_task(s.task_id, 'failed', s.id, format('step %s failed', s.name));
    RETURN QUERY SELECT 'failed'::text, NULL::timestamptz;
END;
$fn$;
