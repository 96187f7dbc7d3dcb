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
               lease_expires_at timestamptz, item jsonb, item_index integer,
               trace_context jsonb, ready_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_msg_ids     bigint[];
    v_step_ids    bigint[];
    v_claim       bigint[];
    v_claim_msgs  bigint[];
    v_new_msgs    bigint[];
    v_until       timestamptz;
    v_claim_from  text[];
    v_claim_tasks bigint[];
    v_claim_ready timestamptz[];
    v_expired     bigint[];
    v_gather      bigint[];
    r             record;
    v_drop        bigint[];
    v_keep        bigint[];
    v_keep_vts    timestamptz[];
    v_id          bigint;
    v_ids         bigint[];
    v_started     bigint[];
    v_prioritized boolean;
    v_limited     boolean;
    v_max         integer := claim.max_messages;
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

    SELECT q.prioritized, q.limited INTO v_prioritized, v_limited FROM tasker.queues AS q WHERE q.name = claim.queue_name;
    -- Flow control (queue_limits.sql): a limited queue's claims take turns on its limit row, and take no more
    -- than its running limit and rate allow.
    IF v_limited THEN
        v_max := tasker._queue_allowance(claim.queue_name, v_max);
        IF v_max < 1 THEN
            RETURN;
        END IF;
    END IF;

    -- Lock up to max_messages visible messages, oldest first (a prioritized queue, queues.sql: higher task
    -- priority first, FIFO within a priority). They are not re-timed, as pgmq.read would: the messages of the
    -- steps claimed are deleted and sent again below. A row that another claim re-timed between this statement's
    -- snapshot and its lock would stay locked by this transaction though skipped (PostgreSQL keeps the lock of a
    -- row that fails the re-check), and the completion of that step, deleting the message, would wait for this
    -- claim to commit; a row that was deleted instead is skipped without a lock.
    v_until := clock_timestamp() + make_interval(secs => claim.visibility_timeout_seconds);
    IF v_prioritized THEN
        EXECUTE format($sql$
            SELECT array_agg(m.msg_id ORDER BY m.p DESC, m.msg_id),
                   array_agg(tasker._message_step_id(m.message) ORDER BY m.p DESC, m.msg_id)
            FROM (SELECT q.msg_id, q.message, coalesce((q.message ->> 'priority')::integer, 0) AS p
                  FROM pgmq.%1$I AS q
                  WHERE q.vt <= clock_timestamp()
                  ORDER BY coalesce((q.message ->> 'priority')::integer, 0) DESC, q.msg_id
                  LIMIT $1 FOR UPDATE SKIP LOCKED) AS m
            $sql$, 'q_' || claim.queue_name)
            INTO v_msg_ids, v_step_ids
            USING v_max;
    ELSE
        EXECUTE format($sql$
            SELECT array_agg(m.msg_id ORDER BY m.msg_id), array_agg(tasker._message_step_id(m.message) ORDER BY m.msg_id)
            FROM (SELECT q.msg_id, q.message FROM pgmq.%1$I AS q
                  WHERE q.vt <= clock_timestamp()
                  ORDER BY q.msg_id
                  LIMIT $1 FOR UPDATE SKIP LOCKED) AS m
            $sql$, 'q_' || claim.queue_name)
            INTO v_msg_ids, v_step_ids
            USING v_max;
    END IF;
    IF v_msg_ids IS NULL THEN
        RETURN;
    END IF;

    -- Classify each message by its step's committed state. Nothing is locked for this read: the update below
    -- claims a step only if it is still in the state read (locking it, in ascending id order: see locks.sql), and
    -- the messages of steps that changed meanwhile are dropped. The task row is not read for it: a task that
    -- failed or was cancelled has stopped every step (under its step locks), so the step's state says it all.
    SELECT array_agg(c.step_id ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.msg_id ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.state ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.task_id ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.ready_at ORDER BY c.pos) FILTER (WHERE c.action = 'claim'),
           array_agg(c.step_id ORDER BY c.pos) FILTER (WHERE c.action = 'expired'),
           array_agg(c.msg_id) FILTER (WHERE c.action IN ('drop', 'gather')),
           array_agg(c.step_id ORDER BY c.pos) FILTER (WHERE c.action = 'gather'),
           array_agg(c.msg_id) FILTER (WHERE c.action = 'keep'),
           array_agg(c.lease_expires_at) FILTER (WHERE c.action = 'keep'),
           array_agg(DISTINCT c.task_id) FILTER (WHERE c.action = 'claim' AND c.task_state = 'pending')
    INTO v_claim, v_claim_msgs, v_claim_from, v_claim_tasks, v_claim_ready, v_expired, v_drop, v_gather, v_keep,
         v_keep_vts, v_started
    FROM (
        SELECT m.pos, m.msg_id, m.step_id, s.state, s.lease_expires_at, s.task_id, t.state AS task_state,
               -- When the step became claimable (for the queue wait a worker may report, docs/tracing.md): its
               -- enqueueing or failure (updated_at), a delay or retry backoff (next_attempt_at), an expired lease.
               CASE WHEN s.state = 'running' THEN s.lease_expires_at
                    ELSE greatest(s.updated_at, s.next_attempt_at) END AS ready_at,
               CASE
                   -- Message ids are per queue: a message names a step only if the step is on this queue.
                   WHEN s.id IS NULL OR s.msg_id IS DISTINCT FROM m.msg_id OR s.queue <> claim.queue_name THEN 'drop'
                   WHEN s.state IN ('enqueued', 'retrying') THEN 'claim'
                   WHEN s.state = 'running' AND s.lease_expires_at <= clock_timestamp() THEN
                       CASE WHEN s.attempts - s.retry_base >= s.max_attempts THEN 'expired' ELSE 'claim' END
                   -- Visible although the lease was extended (a heartbeat could not re-time the message because
                   -- someone held it): put the visibility back and leave the step to its holder.
                   WHEN s.state = 'running' THEN 'keep'
                   -- A map step's last instance finished (maps.sql): gathered here, the message dropped.
                   WHEN s.state = 'mapping' AND s.remaining_parents = 0 THEN 'gather'
                   ELSE 'drop'
               END AS action
        FROM unnest(v_msg_ids, v_step_ids) WITH ORDINALITY AS m (msg_id, step_id, pos)
        LEFT JOIN tasker.steps AS s ON s.id = m.step_id
        LEFT JOIN tasker.tasks AS t ON t.id = s.task_id
    ) AS c;

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
    -- Map steps to gather (maps.sql): their end reaches their children and their task, so the whole lock set.
    IF v_gather IS NOT NULL THEN
        FOREACH v_id IN ARRAY v_gather LOOP
            PERFORM tasker._lock_tasks(ARRAY(SELECT s.task_id FROM tasker.steps AS s WHERE s.id = v_id));
            r := tasker._gather_maps(ARRAY[v_id]);
            IF cardinality(r.ready) > 0 THEN
                PERFORM tasker._enqueue(r.ready, 'dependencies finished');
            END IF;
        END LOOP;
    END IF;
    IF v_claim IS NULL THEN
        IF v_drop IS NOT NULL THEN
            PERFORM tasker._delete_messages(claim.queue_name, v_drop); -- ours: no wait
        END IF;
        RETURN;
    END IF;

    -- Claim: the messages read go (those of the steps to claim, and stale ones) and each step to claim gets a new
    -- one, invisible until its lease expires; then each moves to running if it is still in the state it was
    -- classified in (the update waits for a step someone else holds, e.g. a cancellation freezing its task, and
    -- then re-checks). The new messages of steps that changed meanwhile go too. (One of those may be a running
    -- step whose lease a heartbeat extended in time: it runs on without a message, and if its worker dies, upkeep
    -- re-sends one once the lease has expired for lease_grace_seconds.)
    v_new_msgs := tasker._resend(claim.queue_name, coalesce(v_drop, '{}') || v_claim_msgs, v_claim_msgs, v_until);
    v_ids := tasker._start_attempts(v_claim, array_fill(v_until, ARRAY[cardinality(v_claim)]), v_claim_from,
                                    claim.worker_id, v_new_msgs);
    IF cardinality(v_ids) < cardinality(v_claim) THEN
        PERFORM tasker._delete_messages(claim.queue_name, ARRAY(
            SELECT x.msg_id FROM unnest(v_claim, v_new_msgs) AS x (step_id, msg_id) WHERE NOT x.step_id = ANY (v_ids)));
    END IF;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    -- A task's first claim starts it: the one task-level change a claim makes (and the only time it locks a task
    -- row, after the step locks). No NOTIFY: a notifying commit takes a database-wide lock until its WAL is
    -- flushed, which would serialise the claims of busy workers; the operator follows task-level changes in
    -- tasker.task_transitions (Engine.TaskChanges) instead. The tasks are read again first, unlocked: locking a
    -- task another claim has started since the classification would hold its row to no purpose (a row that fails
    -- the re-check stays locked) and make that task's completions wait for this commit. And a task row that is
    -- locked already is skipped: while this claim holds steps of the task, only another claim starting it or a
    -- completion of its steps (it is running, then) can hold it; if that claim rolls back, the task's next
    -- completion starts it (complete.sql).
    IF v_started IS NOT NULL THEN
        v_started := ARRAY(
            SELECT t.id FROM tasker.tasks AS t
            WHERE t.id = ANY (ARRAY(SELECT x.task_id FROM unnest(v_claim, v_claim_tasks) AS x (id, task_id)
                                    WHERE x.id = ANY (v_ids) AND x.task_id = ANY (v_started)))
              AND t.state = 'pending'
            ORDER BY t.id);
    END IF;
    IF cardinality(v_started) > 0 THEN
        WITH l AS (
            SELECT t.id FROM tasker.tasks AS t WHERE t.id = ANY (v_started) ORDER BY t.id FOR NO KEY UPDATE SKIP LOCKED
        ), started AS (
            UPDATE tasker.tasks AS t
            SET state = 'running', started_at = clock_timestamp(), updated_at = clock_timestamp()
            FROM l
            WHERE t.id = l.id AND t.state = 'pending'
            RETURNING t.id
        )
        INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
        SELECT started.id, 'pending', 'running', 'first step claimed' FROM started;
    END IF;

    IF v_limited THEN
        PERFORM tasker._queue_took(claim.queue_name, cardinality(v_ids));
    END IF;
    RETURN QUERY SELECT c.step_id, c.task_id, c.step_name, c.handler, c.inputs, c.task_context, c.dependency_results,
                        c.attempt, c.lease, c.timeout_seconds, c.lease_expires_at, c.item, c.item_index, c.trace_context,
                        c.ready_at
                 FROM tasker._claimed(v_ids, v_claim, v_claim_ready) AS c;
END;
$fn$;

-- Starts an attempt of each step of p_ids that is still in state p_from[i] (read unlocked by a claim, or under the
-- caller's lock): it becomes running under a new lease that expires at p_vts[i] (when its message, p_msgs[i] if
-- given, becomes visible again), held by p_worker, with attempt + 1 and one history row. The update locks the
-- steps in ascending id order (locks.sql). Returns the ids of the steps it started, in input order ('{}' for
-- none).
CREATE OR REPLACE FUNCTION tasker._start_attempts(p_ids bigint[], p_vts timestamptz[], p_from text[], p_worker text,
                                       p_msgs bigint[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids bigint[];
BEGIN
    WITH c AS MATERIALIZED ( -- in step id order, which is the order the update locks them in
        SELECT x.id, x.vt, x.from_state, x.msg_id, x.ord
        FROM unnest(p_ids, p_vts, p_from, p_msgs) WITH ORDINALITY AS x (id, vt, from_state, msg_id, ord)
        ORDER BY x.id
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'running', lease = tasker._new_lease(s.id), attempts = s.attempts + 1,
            msg_id = coalesce(c.msg_id, s.msg_id), lease_expires_at = c.vt, worker_id = p_worker, started_at = clock_timestamp(),
            next_attempt_at = NULL, updated_at = clock_timestamp()
        FROM c
        WHERE s.id = c.id AND s.state = c.from_state
          -- A running step is taken over only while its lease is still expired: a heartbeat that extended it
          -- before expiry may have committed since the caller read the step (re-checked under the row lock).
          AND (c.from_state <> 'running' OR s.lease_expires_at <= clock_timestamp())
        RETURNING s.id, s.task_id, s.attempts, c.from_state, c.ord
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason)
        SELECT u.task_id, u.id, u.from_state, 'running', u.attempts, p_worker,
               CASE WHEN u.from_state = 'running' THEN 'lease expired' ELSE 'claimed' END
        FROM u
    )
    SELECT coalesce(array_agg(u.id ORDER BY u.ord), '{}') INTO v_ids FROM u;
    RETURN v_ids;
END;
$fn$;

-- What a worker needs to run each of the steps p_ids (just started by _start_attempts), in input order: the columns
-- of claim, and the step's queue. ready_at is when the step became claimable: p_ready_at[i] for the step
-- p_ready_ids[i] (what a claim read before starting it), else the start of this attempt (a step claimed as it
-- became ready, by complete_and_claim). trace_context is the task's (tracing; NULL: none). task_context is the
-- step's own context when it has one (a child workflow's step), else its task's.
CREATE OR REPLACE FUNCTION tasker._claimed(p_ids bigint[], p_ready_ids bigint[] DEFAULT NULL,
                                           p_ready_at timestamptz[] DEFAULT NULL)
RETURNS TABLE (step_id bigint, task_id bigint, step_name text, handler text, inputs jsonb, task_context jsonb,
               dependency_results jsonb, attempt integer, lease uuid, timeout_seconds integer,
               lease_expires_at timestamptz, queue text, item jsonb, item_index integer,
               trace_context jsonb, ready_at timestamptz)
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY
    SELECT s.id, s.task_id, s.name, s.handler, s.inputs, coalesce(s.context, t.context),
           -- A step of a child workflow (children.sql) has the child's context, and its dependencies' results by
           -- their names within the child.
           coalesce((SELECT jsonb_object_agg(CASE WHEN s.child_of IS NULL THEN p.name ELSE tasker._local_name(p.name) END,
                                             p.result)
                     FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                     WHERE e.child_id = s.id), '{}'::jsonb),
           s.attempts, s.lease, s.timeout_seconds, s.lease_expires_at, s.queue, s.item, s.item_index, t.trace_context,
           -- A lookup in the array, not a join with its unnest: the generic plan's nested loop re-ran the unnest
           -- for every step (measured: _claimed 1.4 -> 2.4 ms per 100 steps).
           coalesce(p_ready_at[array_position(p_ready_ids, s.id)], s.started_at)
    FROM unnest(p_ids) WITH ORDINALITY AS x (id, ord)
    JOIN tasker.steps AS s ON s.id = x.id
    JOIN tasker.tasks AS t ON t.id = s.task_id
    ORDER BY x.ord;
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer,
                             worker_id text DEFAULT NULL)
RETURNS TABLE (step_id bigint, task_id bigint, step_name text, handler text, inputs jsonb, task_context jsonb,
               dependency_results jsonb, attempt integer, lease uuid, timeout_seconds integer,
               lease_expires_at timestamptz, item jsonb, item_index integer,
               trace_context jsonb, ready_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_queues(ARRAY[claim.queue_name]);
    RETURN QUERY SELECT * FROM tasker_internal.claim(claim.queue_name, claim.max_messages, claim.visibility_timeout_seconds, claim.worker_id);
END;
$fn$;
