CREATE OR REPLACE FUNCTION tasker._queue_exists(queue text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT to_regclass(format('pgmq.%I', 'q_' || queue)) IS NOT NULL
$fn$;

-- Records the queue in tasker.queues and creates the pgmq queue when missing. The queue's row stays locked
-- (KEY SHARE) until the caller's transaction ends, so drop_unused_queues, which takes the row FOR UPDATE SKIP LOCKED,
-- cannot drop a queue that an admission is about to use; should it have dropped the queue just before, the row is
-- gone and is recorded again here, and the queue created again.
CREATE OR REPLACE FUNCTION tasker._ensure_queue(p_queue text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_queue IS NULL OR p_queue !~ '^[a-z0-9_]{1,40}$' THEN
        RAISE EXCEPTION 'invalid queue name %: must match ^[a-z0-9_]{1,40}$', quote_nullable(p_queue)
            USING ERRCODE = '22023';
    END IF;
    LOOP
        PERFORM FROM tasker.queues AS q WHERE q.name = p_queue FOR KEY SHARE;
        EXIT WHEN FOUND;
        INSERT INTO tasker.queues (name, created_by_tasker) VALUES (p_queue, NOT tasker._queue_exists(p_queue))
        ON CONFLICT (name) DO NOTHING;
    END LOOP;
    IF NOT tasker._queue_exists(p_queue) THEN
        PERFORM pgmq."create"(p_queue::text);
        UPDATE tasker.queues AS q SET created_by_tasker = true WHERE q.name = p_queue AND NOT q.created_by_tasker;
    END IF;
END;
$fn$;

-- Drops queues that tasker created and no step uses any more (every task that used them was deleted), created at
-- least min_age_seconds before as_of (default: now): the row in tasker.queues, the pgmq queue with its archive and
-- the priority index. At most batch_size queues; returns how many were dropped. Safe to run concurrently with
-- admissions (see _ensure_queue) and with itself. A worker polling a dropped queue finds it empty until a task uses
-- the name again, which creates it again.
CREATE OR REPLACE FUNCTION tasker.drop_unused_queues(batch_size integer DEFAULT 100,
                                                     min_age_seconds integer DEFAULT 86400,
                                                     as_of timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_before  timestamptz := coalesce(drop_unused_queues.as_of, clock_timestamp())
                             - coalesce(drop_unused_queues.min_age_seconds, 0) * interval '1 second';
    v_queue   text;
    v_dropped integer := 0;
BEGIN
    IF drop_unused_queues.batch_size IS NULL OR drop_unused_queues.batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = '22023';
    END IF;
    FOR v_queue IN SELECT q.name FROM tasker.queues AS q
                   WHERE q.created_by_tasker AND q.created_at <= v_before
                     AND NOT EXISTS (SELECT FROM tasker.steps AS s WHERE s.queue = q.name)
                   ORDER BY q.name LIMIT drop_unused_queues.batch_size LOOP
        PERFORM FROM tasker.queues AS q WHERE q.name = v_queue FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND; -- an admission holds it, or another upkeep dropped it meanwhile
        -- Looked at again under the lock, in a statement of its own (a snapshot taken after the lock): steps an
        -- admission committed since the query above keep the queue.
        CONTINUE WHEN EXISTS (SELECT FROM tasker.steps AS s WHERE s.queue = v_queue);
        DELETE FROM tasker.queues AS q WHERE q.name = v_queue;
        IF tasker._queue_exists(v_queue) THEN
            PERFORM pgmq.drop_queue(v_queue::text);
        END IF;
        v_dropped := v_dropped + 1;
    END LOOP;
    RETURN v_dropped;
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

-- A queue's backlog as a WorkerPool scales on it: messages a worker could claim now, and messages in flight
-- (claimed: read at least once, or sent claimed); not those waiting for their time (a step's delay, a retry's
-- backoff), for which no replica can do anything yet. NULL when the queue does not exist. Reads the queue's table
-- (a pool's reading, every polling interval).
CREATE OR REPLACE FUNCTION tasker.queue_backlog(p_queue text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_n bigint;
BEGIN
    IF p_queue IS NULL OR p_queue !~ '^[a-z0-9_]{1,40}$' OR NOT tasker._queue_exists(p_queue) THEN
        RETURN NULL;
    END IF;
    IF (SELECT q.limited FROM tasker.queues AS q WHERE q.name = p_queue) THEN
        RETURN tasker._queue_limited_backlog(p_queue); -- capped by the queue's limits (queue_limits.sql)
    END IF;
    EXECUTE format('SELECT count(*) FROM pgmq.%I WHERE vt <= clock_timestamp() OR read_ct > 0', 'q_' || p_queue)
        INTO v_n;
    RETURN v_n;
END;
$fn$;
