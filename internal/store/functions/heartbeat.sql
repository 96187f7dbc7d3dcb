-- Extends a valid lease (and the message's visibility) to now + extend_seconds. ok = false when the lease is not
-- valid any more (expired, re-claimed or finished); cancelled = true when that is because the step was stopped (task cancelled or failed, step
-- completed or resolved by an operator): the handler should stop.
CREATE OR REPLACE FUNCTION tasker_internal.heartbeat(lease uuid, extend_seconds integer)
RETURNS TABLE (ok boolean, cancelled boolean, lease_expires_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_id      bigint := tasker.lease_step_id(heartbeat.lease);
    v_queue   text;
    v_msg     bigint;
    v_expires timestamptz;
    v_state   text;
BEGIN
    IF heartbeat.extend_seconds IS NULL OR heartbeat.extend_seconds < 1 THEN
        RAISE EXCEPTION 'extend_seconds must be at least 1' USING ERRCODE = '22023';
    END IF;
    UPDATE tasker.steps AS s
    SET lease_expires_at = clock_timestamp() + heartbeat.extend_seconds * interval '1 second'
    -- An expired lease is not extended, even when nobody has claimed the step again yet: a claim that read the
    -- step as expired may be about to (it re-checks the expiry under the row lock, claim.sql), and the holder must
    -- not believe it still holds the step when a second worker starts it.
    WHERE s.id = v_id AND s.lease = heartbeat.lease AND s.state = 'running' AND s.lease_expires_at > clock_timestamp()
    RETURNING s.queue, s.msg_id, s.lease_expires_at INTO v_queue, v_msg, v_expires;
    IF FOUND THEN
        -- Not waiting: a claim holding the message (it became visible) will restore the visibility from the step.
        PERFORM tasker._set_visibility(v_queue, ARRAY[v_msg], ARRAY[v_expires]);
        RETURN QUERY SELECT true, false, v_expires;
        RETURN;
    END IF;
    SELECT s.state INTO v_state FROM tasker.steps AS s WHERE s.id = v_id AND s.lease = heartbeat.lease;
    RETURN QUERY SELECT false, coalesce(v_state IN ('cancelled', 'skipped', 'succeeded', 'resolved', 'failed', 'omitted'), false),
                        NULL::timestamptz;
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.heartbeat(lease uuid, extend_seconds integer)
RETURNS TABLE (ok boolean, cancelled boolean, lease_expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_leases(ARRAY[heartbeat.lease]);
    RETURN QUERY SELECT * FROM tasker_internal.heartbeat(heartbeat.lease, heartbeat.extend_seconds);
END;
$fn$;
