CREATE OR REPLACE FUNCTION tasker._queue_exists(queue text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT to_regclass(format('pgmq.%I', 'q_' || queue)) IS NOT NULL
$fn$;

-- Creates the pgmq queue when missing and records it in tasker.queues.
CREATE OR REPLACE FUNCTION tasker._ensure_queue(p_queue text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_queue IS NULL OR p_queue !~ '^[a-z0-9_]{1,40}$' THEN
        RAISE EXCEPTION 'invalid queue name %: must match ^[a-z0-9_]{1,40}$', quote_nullable(p_queue)
            USING ERRCODE = '22023';
    END IF;
    IF NOT tasker._queue_exists(p_queue) THEN
        PERFORM pgmq."create"(p_queue::text);
    END IF;
    INSERT INTO tasker.queues (name) VALUES (p_queue) ON CONFLICT (name) DO NOTHING;
END;
$fn$;
