-- Reads up to max_messages messages of a queue, claims their steps and returns what each handler needs. Messages
-- of steps that cannot run (task finished, step finished or cancelled, stale message) are deleted and not
-- returned. A message that became visible again while its step is still running under an expired lease is
-- re-claimed with a new lease and attempt + 1 (or, on the last attempt, fails the step). Messages are read in
-- pgmq's order (FIFO) or, in a prioritized queue (queues.sql), higher task priority first, and returned in that
-- order.
CREATE OR REPLACE FUNCTION tasker_internal.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer,
                             worker_id text DEFAULT NULL)
RETURNS TABLE (step_id bigint, task_id bigint, step_name text, handler text, inputs jsonb, task_context jsonb,
               dependency_results jsonb, attempt integer, lease uuid, timeout_seconds integer,
               lease_expires_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_msg_ids    bigint[];
    v_step_ids   bigint[];
    v_vts        timestamptz[];
    v_claim      bigint[];
    v_claim_vts  timestamptz[];
    v_claim_from text[];
    v_expired    bigint[];
    v_drop       bigint[];
    v_keep       bigint[];
    v_keep_vts   timestamptz[];
    v_id         bigint;
    v_ids        bigint[];
    v_task_ids   bigint[];
    v_names      text[];
    v_handlers   text[];
    v_inputs     jsonb[];
    v_attempts   integer[];
    v_leases     uuid[];
    v_timeouts   integer[];
    v_expires    timestamptz[];
    v_started    bigint[];
BEGIN
    IF claim.queue_name IS NULL OR claim.queue_name !~ '^[a-z0-9_]{1,40}$' THEN
        RAISE EXCEPTION 'invalid queue name %: must match ^[a-z0-9_]{1,40}$', quote_nullable(claim.queue_name)
            USING ERRCODE = '22023';
    END IF;
    IF claim.max_messages IS NULL OR claim.max_messages NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_messages must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    IF claim.visibility_timeout_seconds IS NULL OR claim.visibility_timeout_seconds < 1 THEN
        RAISE EXCEPTION 'visibility_timeout_seconds must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF NOT tasker._queue_exists(claim.queue_name) THEN
        RETURN; -- no task has used this queue yet
    END IF;

    IF (SELECT q.prioritized FROM tasker.queues AS q WHERE q.name = claim.queue_name) THEN
        -- Higher task priority first, FIFO within a priority (queues.sql): what pgmq.read does, in another order.
        EXECUTE format($sql$
            WITH c AS (
                SELECT m.msg_id FROM pgmq.%1$I AS m
                WHERE m.vt <= clock_timestamp()
                ORDER BY coalesce((m.message ->> 'priority')::integer, 0) DESC, m.msg_id
                LIMIT $1 FOR UPDATE SKIP LOCKED
            ), r AS (
                UPDATE pgmq.%1$I AS q
                SET vt = clock_timestamp() + $2 * interval '1 second', read_ct = q.read_ct + 1
                FROM c WHERE q.msg_id = c.msg_id
                RETURNING q.msg_id, q.message, q.vt
            )
            SELECT array_agg(r.msg_id ORDER BY r.p DESC, r.msg_id),
                   array_agg(tasker._message_step_id(r.message) ORDER BY r.p DESC, r.msg_id),
                   array_agg(r.vt ORDER BY r.p DESC, r.msg_id)
            FROM (SELECT r.*, coalesce((r.message ->> 'priority')::integer, 0) AS p FROM r) AS r
            $sql$, 'q_' || claim.queue_name)
            INTO v_msg_ids, v_step_ids, v_vts
            USING claim.max_messages, claim.visibility_timeout_seconds;
    ELSE
        SELECT array_agg(r.msg_id ORDER BY r.msg_id), array_agg(tasker._message_step_id(r.message) ORDER BY r.msg_id),
               array_agg(r.vt ORDER BY r.msg_id)
        INTO v_msg_ids, v_step_ids, v_vts
        FROM pgmq.read(claim.queue_name::text, claim.visibility_timeout_seconds::integer,
                       claim.max_messages::integer) AS r;
    END IF;
    IF v_msg_ids IS NULL THEN
        RETURN;
    END IF;

    -- Classify each message by its step's committed state. Nothing is locked for this read: the update below
    -- claims a step only if it is still in the state read (locking it, in ascending id order: see locks.sql), and
    -- the messages of steps that changed meanwhile are dropped. The task row is not read for it: a task that
    -- failed or was cancelled has stopped every step (under its step locks), so the step's state says it all.
    SELECT array_agg(c.step_id ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.vt ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.state ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.step_id ORDER BY c.pos) FILTER (WHERE c.action = 'expired'),
           array_agg(c.msg_id) FILTER (WHERE c.action = 'drop'),
           array_agg(c.msg_id) FILTER (WHERE c.action = 'keep'),
           array_agg(c.lease_expires_at) FILTER (WHERE c.action = 'keep'),
           array_agg(DISTINCT c.task_id) FILTER (WHERE c.action = 'claim' AND c.task_state = 'pending')
    INTO v_claim, v_claim_vts, v_claim_from, v_expired, v_drop, v_keep, v_keep_vts, v_started
    FROM (
        SELECT m.pos, m.msg_id, m.step_id, m.vt, s.state, s.lease_expires_at, s.task_id, t.state AS task_state,
               CASE
                   WHEN s.id IS NULL OR s.msg_id IS DISTINCT FROM m.msg_id THEN 'drop'
                   WHEN s.state IN ('enqueued', 'retrying') THEN 'claim'
                   WHEN s.state = 'running' AND s.lease_expires_at <= clock_timestamp() THEN
                       CASE WHEN s.attempts - s.retry_base >= s.max_attempts THEN 'expired' ELSE 'claim' END
                   -- Visible although the lease was extended (a heartbeat could not re-time the message because
                   -- someone held it): put the visibility back and leave the step to its holder.
                   WHEN s.state = 'running' THEN 'keep'
                   ELSE 'drop'
               END AS action
        FROM unnest(v_msg_ids, v_step_ids, v_vts) WITH ORDINALITY AS m (msg_id, step_id, vt, pos)
        LEFT JOIN tasker.steps AS s ON s.id = m.step_id
        LEFT JOIN tasker.tasks AS t ON t.id = s.task_id
    ) AS c;

    IF v_drop IS NOT NULL THEN
        PERFORM tasker._delete_messages(claim.queue_name, v_drop); -- ours: no wait
    END IF;
    IF v_keep IS NOT NULL THEN
        PERFORM tasker._set_visibility(claim.queue_name, v_keep, v_keep_vts);
    END IF;
    -- The last attempt's lease expired: the worker died (or hung) on it every time. Fail like a retryable error.
    IF v_expired IS NOT NULL THEN
        FOREACH v_id IN ARRAY v_expired LOOP
            -- Failing the last attempt fails the task, which stops (and locks) all of its steps.
            PERFORM tasker._lock_tasks(ARRAY(SELECT s.task_id FROM tasker.steps AS s WHERE s.id = v_id));
            IF (SELECT s.state FROM tasker.steps AS s WHERE s.id = v_id) = 'running' THEN
                PERFORM tasker._fail_running(v_id,
                    jsonb_build_object('message', 'lease expired: the worker stopped reporting'), true, NULL,
                    'lease expired');
            END IF;
        END LOOP;
    END IF;
    IF v_claim IS NULL THEN
        RETURN;
    END IF;

    -- Claim: each step moves to running if it is still in the state it was classified in (the update waits for a
    -- step someone else holds, e.g. a cancellation freezing its task, and then re-checks).
    WITH c AS MATERIALIZED ( -- in step id order, which is the order the update locks them in
        SELECT x.id, x.vt, x.from_state, x.ord
        FROM unnest(v_claim, v_claim_vts, v_claim_from) WITH ORDINALITY AS x (id, vt, from_state, ord)
        ORDER BY x.id
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'running', lease = tasker._new_lease(s.id), attempts = s.attempts + 1,
            lease_expires_at = c.vt, worker_id = claim.worker_id, started_at = clock_timestamp(),
            next_attempt_at = NULL, updated_at = clock_timestamp()
        FROM c
        WHERE s.id = c.id AND s.state = c.from_state
        RETURNING s.id, s.task_id, s.name, s.handler, s.inputs, s.attempts, s.lease, s.timeout_seconds,
                  s.lease_expires_at, c.from_state, c.ord
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason)
        SELECT u.task_id, u.id, u.from_state, 'running', u.attempts, claim.worker_id,
               CASE WHEN u.from_state = 'running' THEN 'lease expired' ELSE 'claimed' END
        FROM u
    )
    SELECT array_agg(u.id ORDER BY u.ord), array_agg(u.task_id ORDER BY u.ord), array_agg(u.name ORDER BY u.ord),
           array_agg(u.handler ORDER BY u.ord), array_agg(u.inputs ORDER BY u.ord), array_agg(u.attempts ORDER BY u.ord),
           array_agg(u.lease ORDER BY u.ord), array_agg(u.timeout_seconds ORDER BY u.ord),
           array_agg(u.lease_expires_at ORDER BY u.ord)
    INTO v_ids, v_task_ids, v_names, v_handlers, v_inputs, v_attempts, v_leases, v_timeouts, v_expires
    FROM u;

    IF coalesce(cardinality(v_ids), 0) < cardinality(v_claim) THEN
        -- Steps that changed between the read and the update (stopped, finished): their messages are ours, and
        -- stale now.
        PERFORM tasker._delete_messages(claim.queue_name, ARRAY(
            SELECT m.msg_id FROM unnest(v_msg_ids, v_step_ids) AS m (msg_id, step_id)
            WHERE m.step_id = ANY (v_claim) AND NOT m.step_id = ANY (coalesce(v_ids, '{}'))));
    END IF;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- A task's first claim starts it: the one task-level change a claim makes (and the only time it locks a task
    -- row, after the step locks; the state is re-checked under that lock). No NOTIFY: a notifying commit takes a
    -- database-wide lock until its WAL is flushed, which would serialise the claims of busy workers; the operator
    -- follows task-level changes in tasker.task_transitions (Engine.TaskChanges) instead.
    v_started := ARRAY(SELECT x.id FROM unnest(v_started) AS x (id) WHERE x.id = ANY (v_task_ids));
    IF cardinality(v_started) > 0 THEN
        PERFORM 1 FROM tasker.tasks AS t WHERE t.id = ANY (v_started) ORDER BY t.id FOR NO KEY UPDATE OF t;
        WITH started AS (
            UPDATE tasker.tasks AS t
            SET state = 'running', started_at = clock_timestamp(), updated_at = clock_timestamp()
            WHERE t.id = ANY (v_started) AND t.state = 'pending'
            RETURNING t.id
        )
        INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
        SELECT started.id, 'pending', 'running', 'first step claimed' FROM started;
    END IF;

    RETURN QUERY
    SELECT u.id, u.task_id, u.name, u.handler, u.inputs, t.context,
           coalesce((SELECT jsonb_object_agg(p.name, p.result)
                     FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                     WHERE e.child_id = u.id), '{}'::jsonb),
           u.attempts, u.lease, u.timeout_seconds, u.expires
    FROM unnest(v_ids, v_task_ids, v_names, v_handlers, v_inputs, v_attempts, v_leases, v_timeouts, v_expires)
         WITH ORDINALITY AS u (id, task_id, name, handler, inputs, attempts, lease, timeout_seconds, expires, ord)
    JOIN tasker.tasks AS t ON t.id = u.task_id
    ORDER BY u.ord;
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer,
                             worker_id text DEFAULT NULL)
RETURNS TABLE (step_id bigint, task_id bigint, step_name text, handler text, inputs jsonb, task_context jsonb,
               dependency_results jsonb, attempt integer, lease uuid, timeout_seconds integer,
               lease_expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_queues(ARRAY[claim.queue_name]);
    RETURN QUERY SELECT * FROM tasker_internal.claim(claim.queue_name, claim.max_messages, claim.visibility_timeout_seconds, claim.worker_id);
END;
$fn$;
