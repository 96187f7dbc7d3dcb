-- Sends one message per step ({"task_id","step_id","attempt"}, and "priority" in a prioritized queue), visible at
-- p_visible_at (NULL: now), and returns the message ids in input order. p_read_ct 1 marks messages of steps claimed
-- as they are sent (complete_and_claim, a restored running step's): in flight, not waiting for their time, which
-- is how a pool's backlog tells the two apart (tasker.queue_backlog).
CREATE OR REPLACE FUNCTION tasker._send(p_queue text, p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[],
                             p_visible_at timestamptz DEFAULT NULL, p_read_ct integer DEFAULT 0) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_msgs jsonb[];
    v_ids  bigint[];
BEGIN
    IF (SELECT q.prioritized FROM tasker.queues AS q WHERE q.name = p_queue) THEN
        -- A prioritized queue (queues.sql): each message carries its task's priority, which claims read by.
        SELECT array_agg(jsonb_build_object('task_id', m.task_id, 'step_id', m.step_id, 'attempt', m.attempt,
                                            'priority', coalesce(t.priority, 0)) ORDER BY m.ord)
        INTO v_msgs
        FROM unnest(p_task_ids, p_step_ids, p_attempts) WITH ORDINALITY AS m (task_id, step_id, attempt, ord)
        LEFT JOIN tasker.tasks AS t ON t.id = m.task_id;
    ELSE
        SELECT array_agg(jsonb_build_object('task_id', m.task_id, 'step_id', m.step_id, 'attempt', m.attempt)
                         ORDER BY m.ord)
        INTO v_msgs
        FROM unnest(p_task_ids, p_step_ids, p_attempts) WITH ORDINALITY AS m (task_id, step_id, attempt, ord);
    END IF;
    IF v_msgs IS NULL THEN
        RETURN '{}';
    END IF;
    -- What pgmq.send and send_batch do (one INSERT ... SELECT in array order, so the sorted ids line up with the
    -- input), one statement instead of pgmq's three nested calls: this runs in every completion that enqueues a
    -- step.
    IF cardinality(v_msgs) = 1 THEN
        EXECUTE format('INSERT INTO pgmq.%I (vt, message, read_ct) VALUES ($1, $2, $3) RETURNING ARRAY[msg_id]',
                       'q_' || p_queue)
            INTO v_ids USING coalesce(p_visible_at, clock_timestamp()), v_msgs[1], p_read_ct;
        IF p_visible_at IS NULL OR p_visible_at <= clock_timestamp() THEN
            PERFORM tasker._wake(p_queue, v_ids[1]);
        END IF;
        RETURN v_ids;
    END IF;
    EXECUTE format($sql$
        WITH m AS (
            INSERT INTO pgmq.%1$I (vt, message, read_ct)
            SELECT $1, x.msg, $3 FROM unnest($2::jsonb[]) WITH ORDINALITY AS x (msg, ord) ORDER BY x.ord
            RETURNING msg_id
        )
        SELECT array_agg(m.msg_id ORDER BY m.msg_id) FROM m
        $sql$, 'q_' || p_queue)
        INTO v_ids USING coalesce(p_visible_at, clock_timestamp()), v_msgs, p_read_ct;
    IF cardinality(v_ids) IS DISTINCT FROM cardinality(v_msgs) THEN
        RAISE EXCEPTION 'pgmq returned % message ids for % messages', cardinality(v_ids), cardinality(v_msgs);
    END IF;
    IF p_visible_at IS NULL OR p_visible_at <= clock_timestamp() THEN
        PERFORM tasker._wake(p_queue, v_ids[1]);
    END IF;
    RETURN v_ids;
END;
$fn$;

-- Wakes idle workers of a queue (NOTIFY tasker_queue) that just got a visible message p_first_new (and maybe
-- later ones), when no earlier message of the queue is visible. Workers go idle only after a claim found the queue
-- empty and claim again as long as they find work, so a queue that already has visible messages has no idle worker
-- to wake (a worker whose claim raced with this check and found nothing polls: Config.PollInterval). Announcing
-- only the empty -> non-empty edge keeps busy queues' commits free of NOTIFY, which takes a database-wide lock
-- held until the commit's WAL is flushed and so would serialise every sending transaction.
CREATE OR REPLACE FUNCTION tasker._wake(p_queue text, p_first_new bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_busy boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT FROM pgmq.%I WHERE msg_id < $1 AND vt <= clock_timestamp())', 'q_' || p_queue)
        INTO v_busy USING p_first_new;
    IF NOT v_busy THEN
        PERFORM pg_notify('tasker_queue', p_queue);
    END IF;
END;
$fn$;

-- Sends one message per step, grouping by queue, visible at p_visible_at (NULL: now); returns the message ids in
-- input order.
CREATE OR REPLACE FUNCTION tasker._send_for(p_queues text[], p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[],
                                 p_visible_at timestamptz DEFAULT NULL, p_read_ct integer DEFAULT 0)
RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    r     record;
    v_out bigint[];
    v_ids bigint[];
    i     integer;
BEGIN
    IF p_queues IS NULL OR cardinality(p_queues) = 0 THEN
        RETURN '{}';
    END IF;
    IF p_queues[1] = ALL (p_queues) THEN -- one queue: the usual case
        RETURN tasker._send(p_queues[1], p_task_ids, p_step_ids, p_attempts, p_visible_at, p_read_ct);
    END IF;
    v_out := array_fill(NULL::bigint, ARRAY[cardinality(p_step_ids)]);
    FOR r IN SELECT m.queue, array_agg(m.ord ORDER BY m.ord) AS ords, array_agg(m.task_id ORDER BY m.ord) AS task_ids,
                    array_agg(m.step_id ORDER BY m.ord) AS step_ids, array_agg(m.attempt ORDER BY m.ord) AS attempts
             FROM unnest(p_queues, p_task_ids, p_step_ids, p_attempts) WITH ORDINALITY
                  AS m (queue, task_id, step_id, attempt, ord)
             GROUP BY m.queue ORDER BY m.queue LOOP
        v_ids := tasker._send(r.queue, r.task_ids, r.step_ids, r.attempts, p_visible_at, p_read_ct);
        FOR i IN 1 .. cardinality(r.ords) LOOP
            v_out[r.ords[i]] := v_ids[i];
        END LOOP;
    END LOOP;
    RETURN v_out;
END;
$fn$;

-- Deletes the messages p_drop (locked by the caller, or its own), and sends each message of p_resend (among them)
-- again, as it is, visible at p_visible_at: returns the new ids in the order of p_resend. A claim does this
-- instead of re-timing the messages it claims (claim.sql says why); the new rows keep the old ones' enqueued_at,
-- and count the read. One statement.
CREATE OR REPLACE FUNCTION tasker._resend(p_queue text, p_drop bigint[], p_resend bigint[], p_visible_at timestamptz)
RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids bigint[];
BEGIN
    EXECUTE format($sql$
        WITH d AS (
            DELETE FROM pgmq.%1$I AS q WHERE q.msg_id = ANY ($1)
            RETURNING q.msg_id, q.message, q.headers, q.read_ct, q.enqueued_at
        ), n AS (
            INSERT INTO pgmq.%1$I (vt, message, headers, read_ct, enqueued_at, last_read_at)
            SELECT $3, d.message, d.headers, d.read_ct + 1, d.enqueued_at, clock_timestamp()
            FROM unnest($2::bigint[]) WITH ORDINALITY AS x (msg_id, ord) JOIN d ON d.msg_id = x.msg_id
            ORDER BY x.ord
            RETURNING msg_id
        )
        SELECT array_agg(n.msg_id ORDER BY n.msg_id) FROM n
        $sql$, 'q_' || p_queue)
        INTO v_ids USING p_drop, p_resend, p_visible_at;
    IF cardinality(v_ids) IS DISTINCT FROM cardinality(p_resend) THEN
        RAISE EXCEPTION 'resent % of % messages', coalesce(cardinality(v_ids), 0), cardinality(p_resend);
    END IF;
    RETURN v_ids;
END;
$fn$;

-- Deletes messages without waiting: a message locked by someone else is left to its holder (a claim, which
-- deletes messages of steps it cannot claim).
CREATE OR REPLACE FUNCTION tasker._delete_messages(p_queue text, p_msg_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    n integer;
BEGIN
    IF p_msg_ids IS NULL OR cardinality(p_msg_ids) = 0 OR NOT tasker._queue_exists(p_queue) THEN
        RETURN 0;
    END IF;
    EXECUTE format($sql$
        DELETE FROM pgmq.%1$I AS q
        WHERE q.msg_id IN (SELECT l.msg_id FROM pgmq.%1$I AS l WHERE l.msg_id = ANY ($1) FOR UPDATE SKIP LOCKED)
        $sql$, 'q_' || p_queue)
        USING p_msg_ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$fn$;

-- Deletes messages, waiting for row locks: only for callers that hold no task or step lock yet. Queues are
-- visited in name order, messages locked in id order. Returns the ids deleted.
CREATE OR REPLACE FUNCTION tasker._delete_messages_wait(p_queues text[], p_msg_ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    r     record;
    v_id  bigint;
    v_out bigint[] := '{}';
BEGIN
    IF cardinality(p_msg_ids) = 1 THEN
        -- One message (a chain's step): no order to keep, and the simplest statement to plan.
        IF p_msg_ids[1] IS NULL OR NOT tasker._queue_exists(p_queues[1]) THEN
            RETURN v_out;
        END IF;
        EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1 RETURNING msg_id', 'q_' || p_queues[1])
            INTO v_id USING p_msg_ids[1];
        RETURN CASE WHEN v_id IS NULL THEN v_out ELSE ARRAY[v_id] END;
    END IF;
    FOR r IN SELECT m.queue, array_agg(m.msg_id ORDER BY m.msg_id) AS ids
             FROM unnest(p_queues, p_msg_ids) AS m (queue, msg_id)
             WHERE m.msg_id IS NOT NULL
             GROUP BY m.queue ORDER BY m.queue LOOP
        CONTINUE WHEN NOT tasker._queue_exists(r.queue);
        -- Rows locked in msg_id order (not pgmq.delete's, which follows whatever plan the queue table gets): two
        -- calls deleting overlapping messages (a cancellation and a completion of the same steps) then wait for
        -- each other in one order and cannot deadlock.
        EXECUTE format($sql$
            WITH d AS (
                DELETE FROM pgmq.%1$I AS q
                WHERE q.msg_id IN (SELECT l.msg_id FROM pgmq.%1$I AS l WHERE l.msg_id = ANY ($1)
                                   ORDER BY l.msg_id FOR UPDATE)
                RETURNING q.msg_id
            )
            SELECT coalesce(array_agg(d.msg_id), '{}') FROM d
            $sql$, 'q_' || r.queue)
            INTO r.ids USING r.ids;
        v_out := v_out || r.ids;
    END LOOP;
    RETURN v_out;
END;
$fn$;

-- After _delete_messages_wait: a step among p_step_ids that still needs its message (running, enqueued or
-- retrying: its lease went stale while the caller waited, e.g. it was re-claimed) but lost it gets a new one,
-- visible when it would have been. Caller holds the task locks.
CREATE OR REPLACE FUNCTION tasker._restore_messages(p_step_ids bigint[], p_deleted bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s     tasker.steps%ROWTYPE;
    v_msg bigint;
BEGIN
    IF p_deleted IS NULL OR cardinality(p_deleted) = 0 THEN
        RETURN;
    END IF;
    FOR s IN SELECT * FROM tasker.steps AS x
             WHERE x.id = ANY (p_step_ids) AND x.msg_id = ANY (p_deleted)
               AND x.state IN ('running', 'enqueued', 'retrying') LOOP
        v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1],
                               CASE s.state WHEN 'running' THEN s.lease_expires_at
                                            ELSE s.next_attempt_at END, -- retrying, or a delayed enqueued step
                               CASE s.state WHEN 'running' THEN 1 ELSE 0 END))[1];
        UPDATE tasker.steps AS x SET msg_id = v_msg WHERE x.id = s.id;
    END LOOP;
END;
$fn$;

-- Sets the visibility of messages without waiting (see _delete_messages). Returns how many were changed.
CREATE OR REPLACE FUNCTION tasker._set_visibility(p_queue text, p_msg_ids bigint[], p_vts timestamptz[]) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    n integer;
BEGIN
    IF p_msg_ids IS NULL OR cardinality(p_msg_ids) = 0 OR NOT tasker._queue_exists(p_queue) THEN
        RETURN 0;
    END IF;
    EXECUTE format($sql$
        UPDATE pgmq.%1$I AS q SET vt = v.vt
        FROM unnest($1::bigint[], $2::timestamptz[]) AS v (msg_id, vt)
        WHERE q.msg_id = v.msg_id
          AND q.msg_id IN (SELECT l.msg_id FROM pgmq.%1$I AS l WHERE l.msg_id = ANY ($1) FOR UPDATE SKIP LOCKED)
        $sql$, 'q_' || p_queue)
        USING p_msg_ids, p_vts;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$fn$;

CREATE OR REPLACE FUNCTION tasker._message_exists(p_queue text, p_msg_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_found boolean;
BEGIN
    IF p_msg_id IS NULL OR NOT tasker._queue_exists(p_queue) THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgmq.%I WHERE msg_id = $1)', 'q_' || p_queue)
        INTO v_found USING p_msg_id;
    RETURN v_found;
END;
$fn$;
