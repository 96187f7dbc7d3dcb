-- How many times a step may be given back without its attempt counting (tasker_internal.release).
CREATE OR REPLACE FUNCTION tasker.max_releases() RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$ SELECT 100 $fn$;

-- Gives a claimed step back (graceful shutdown): it is enqueued again and its message visible at once; the
-- attempt does not count. status 'released' or 'stale_lease'. A step given back tasker.max_releases() times
-- already (a handler that never finishes before its workers are stopped) is not given back for free any more: the
-- release is recorded as a retryable failure, status 'retrying' or 'failed' as from fail.
CREATE OR REPLACE FUNCTION tasker_internal.release(lease uuid) RETURNS TABLE (ok boolean, status text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_id   bigint := tasker.lease_step_id(release.lease);
    s      tasker.steps%ROWTYPE;
    v_msg  bigint;
BEGIN
    IF (SELECT x.releases FROM tasker.steps AS x WHERE x.id = v_id AND x.lease = release.lease) >= tasker.max_releases() THEN
        RETURN QUERY SELECT f.ok, f.status FROM tasker_internal.fail(release.lease,
            jsonb_build_object('message', format('released %s times without finishing: this release counts as a failed attempt',
                                                 tasker.max_releases())), true, NULL) AS f;
        RETURN;
    END IF;
    -- The step's own lock (taken by the update) is all a release needs: its task does not change.
    UPDATE tasker.steps AS x
    SET state = 'enqueued', attempts = x.attempts - 1, releases = x.releases + 1, lease_expires_at = NULL,
        updated_at = clock_timestamp()
    WHERE x.id = v_id AND x.lease = release.lease AND x.state = 'running'
    RETURNING x.* INTO s;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 'stale_lease'::text;
        RETURN;
    END IF;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason)
    VALUES (s.task_id, s.id, 'running', 'enqueued', s.attempts + 1, s.worker_id, 'released');
    IF tasker._set_visibility(s.queue, ARRAY[s.msg_id], ARRAY[clock_timestamp()]) = 1 THEN
        PERFORM tasker._wake(s.queue, s.msg_id);
    ELSE
        -- The message is gone, or locked by someone we must not wait for: send a new one (the old one, if any,
        -- is now stale and will be dropped by the claim that reads it).
        v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1]))[1];
        UPDATE tasker.steps AS x SET msg_id = v_msg WHERE x.id = s.id;
    END IF;
    RETURN QUERY SELECT true, 'released'::text;
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.release(lease uuid)
RETURNS TABLE (ok boolean, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_leases(ARRAY[release.lease]);
    RETURN QUERY SELECT * FROM tasker_internal.release(release.lease);
END;
$fn$;
