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

-- Makes a queue prioritized (migration 0006) the first time a task with a non-zero priority uses it: an index on
-- (priority desc, msg_id) for claims to read by, and the flag that makes sends record each message's priority and
-- claims read in that order. The queue's row lock serialises concurrent first uses. Building the index holds a
-- SHARE lock on the queue table (sends and claims of that queue wait) for as long as it takes: once per queue,
-- short while the queue is small.
CREATE OR REPLACE FUNCTION tasker._prioritize_queue(p_queue text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF (SELECT q.prioritized FROM tasker.queues AS q WHERE q.name = p_queue FOR NO KEY UPDATE) THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I ((coalesce((message ->> ''priority'')::integer, 0)) DESC, msg_id)',
                   'q_' || p_queue || '_priority_idx', 'q_' || p_queue);
    UPDATE tasker.queues AS q SET prioritized = true WHERE q.name = p_queue;
END;
$fn$;
