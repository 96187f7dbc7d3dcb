-- Reports a failure. Retryable with attempts left: the step waits in 'retrying' and its message is re-sent to be
-- visible after retry_after_seconds when given, else after the step's exponential backoff (with jitter).
-- Otherwise the step fails and so does its task (steps below it are skipped, every other unfinished step
-- cancelled). status: 'retrying', 'failed' or 'stale_lease' (nothing changed).
CREATE OR REPLACE FUNCTION tasker_internal.fail(lease uuid, error jsonb, retryable boolean DEFAULT true,
                            retry_after_seconds double precision DEFAULT NULL)
RETURNS TABLE (ok boolean, status text, next_attempt_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_id      bigint := tasker.lease_step_id(fail.lease);
    v_task    bigint;
    v_queue   text;
    v_msg     bigint;
    v_deleted bigint[];
    v_final   boolean;
BEGIN
    -- NaN compares greater than every number in PostgreSQL: it would become the longest delay (a year).
    IF fail.retry_after_seconds IS NOT NULL AND fail.retry_after_seconds IN ('NaN', 'Infinity', '-Infinity') THEN
        RAISE EXCEPTION 'retry_after_seconds must be a finite number of seconds, not %', fail.retry_after_seconds
            USING ERRCODE = '22023';
    END IF;
    SELECT s.task_id, s.queue, s.msg_id,
           NOT coalesce(fail.retryable, true) OR s.attempts - s.retry_base >= s.max_attempts
    INTO v_task, v_queue, v_msg, v_final
    FROM tasker.steps AS s WHERE s.id = v_id AND s.lease = fail.lease AND s.state = 'running';
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 'stale_lease'::text, NULL::timestamptz;
        RETURN;
    END IF;
    -- Before any lock: the attempt's message goes whatever happens next (see locks.sql).
    v_deleted := tasker._delete_messages_wait(ARRAY[v_queue], ARRAY[v_msg]);
    -- A retry changes the step alone. A final failure fails the task, which stops all of its steps: lock them all
    -- (locks.sql). Which one it is cannot change while the lease is valid (re-checked below).
    IF v_final THEN
        PERFORM tasker._lock_tasks(ARRAY[v_task]);
    ELSE
        PERFORM 1 FROM tasker.steps AS s WHERE s.id = v_id FOR NO KEY UPDATE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tasker.steps AS s
                   WHERE s.id = v_id AND s.lease = fail.lease AND s.state = 'running') THEN
        PERFORM tasker._restore_messages(ARRAY[v_id], v_deleted);
        RETURN QUERY SELECT false, 'stale_lease'::text, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT true, f.status, f.next_attempt_at
    FROM tasker._fail_running(v_id, fail.error, coalesce(fail.retryable, true), fail.retry_after_seconds,
                              CASE WHEN coalesce(fail.retryable, true) THEN 'failed' ELSE 'failed permanently' END)
         AS f;
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.fail(lease uuid, error jsonb, retryable boolean DEFAULT true,
                            retry_after_seconds double precision DEFAULT NULL)
RETURNS TABLE (ok boolean, status text, next_attempt_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_leases(ARRAY[fail.lease]);
    RETURN QUERY SELECT * FROM tasker_internal.fail(fail.lease, fail.error, fail.retryable, fail.retry_after_seconds);
END;
$fn$;
