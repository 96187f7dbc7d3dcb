-- Upserts a worker's self-report (informational; see tasker.workers).
CREATE OR REPLACE FUNCTION tasker_internal.worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer,
                                        hostname text DEFAULT '', metadata jsonb DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF length(worker_heartbeat.worker_id) IS NULL OR length(worker_heartbeat.worker_id) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'worker_id must be 1 to 255 characters' USING ERRCODE = '22023';
    END IF;
    IF coalesce(worker_heartbeat.slots, 0) < 0 OR coalesce(worker_heartbeat.in_flight, 0) < 0 THEN
        RAISE EXCEPTION 'slots and in_flight must not be negative' USING ERRCODE = '22023';
    END IF;
    INSERT INTO tasker.workers AS w (id, queues, slots, in_flight, hostname, metadata)
    VALUES (worker_id, coalesce(queues, '{}'), coalesce(slots, 0), coalesce(in_flight, 0), coalesce(hostname, ''),
            metadata)
    ON CONFLICT (id) DO UPDATE
    SET queues = excluded.queues, slots = excluded.slots, in_flight = excluded.in_flight,
        hostname = excluded.hostname, metadata = excluded.metadata, last_heartbeat_at = now()
    WHERE tasker._denied_queue(w.queues) IS NULL; -- checked by the entry point; again here on the locked row
END;
$fn$;

CREATE OR REPLACE FUNCTION tasker_internal.worker_stopped(worker_id text) RETURNS void
LANGUAGE sql AS $fn$
    DELETE FROM tasker.workers AS w
    WHERE w.id = worker_stopped.worker_id
      AND tasker._denied_queue(w.queues) IS NULL -- checked by the entry point; again here on the locked row
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer,
                                        hostname text DEFAULT '', metadata jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_queues(worker_heartbeat.queues);
    PERFORM tasker._authorize_worker_record(worker_heartbeat.worker_id);
    PERFORM tasker_internal.worker_heartbeat(worker_heartbeat.worker_id, worker_heartbeat.queues, worker_heartbeat.slots, worker_heartbeat.in_flight, worker_heartbeat.hostname, worker_heartbeat.metadata);
END;
$fn$;

-- The worker-facing entry point: checks that the caller may work the record's queues (roles.sql), then runs the
-- implementation above with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.worker_stopped(worker_id text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_worker_record(worker_stopped.worker_id);
    PERFORM tasker_internal.worker_stopped(worker_stopped.worker_id);
END;
$fn$;
