-- Reports many successes in one transaction and claims, for the caller, up to max_claims of the steps these
-- successes made ready: steps of the same queues as the completed ones (which the caller serves), lowest id first,
-- except in prioritized queues (queues.sql), where a claim must take the highest priority first, and in limited
-- queues (queue_limits.sql), whose limits only claim enforces. Such a step is
-- enqueued and claimed as if the caller had called claim right after (the same history rows), but without the
-- second transaction, and its message is never visible while its lease holds: the next step of a chain starts on
-- the worker that finished the previous one, one commit later. Ready steps beyond max_claims are enqueued for any
-- worker. max_claims = 0 claims nothing (complete_many); visibility_timeout_seconds and worker_id are claim's.
--
-- Returns one row per lease, in input order: ok, and status 'succeeded' or 'stale_lease' (unknown lease, or the
-- step is no longer running under it: nothing was changed for it), or 'result_refused' (step 0 below); then one
-- row per claimed step, in step id
-- order, with status 'claimed', ok = true, lease its new lease, its queue and the other columns as claim returns
-- them (NULL in the rows of the reported leases).
CREATE OR REPLACE FUNCTION tasker_internal.complete_and_claim(leases uuid[], results jsonb[], max_claims integer,
                             visibility_timeout_seconds integer, worker_id text DEFAULT NULL)
RETURNS TABLE (lease uuid, ok boolean, status text, queue text, step_id bigint, task_id bigint, step_name text,
               handler text, inputs jsonb, task_context jsonb, dependency_results jsonb, attempt integer,
               timeout_seconds integer, lease_expires_at timestamptz, item jsonb, item_index integer,
               trace_context jsonb, ready_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_tasks      bigint[];
    v_queues     text[];
    v_msgs       bigint[];
    v_steps      bigint[];
    v_deleted    bigint[];
    v_ids        bigint[];
    v_done_tasks bigint[];
    v_leases     uuid[];
    v_children   bigint[];
    v_counts     integer[];
    v_ready      bigint[];
    v_rqueues    text[];
    v_rtasks     bigint[];
    v_rattempts  integer[];
    v_rmsgs      bigint[];
    v_mine       bigint[];
    v_mqueues    text[];
    v_mtasks     bigint[];
    v_mattempts  integer[];
    v_mmsgs      bigint[];
    v_until      timestamptz;
    v_claimed    bigint[] := '{}';
    v_pending    bigint[];
    v_later      bigint[];
    v_gather     bigint[];
    v_conditional boolean;
    v_problem    text;
    v_problem_at bigint;
    v_failed     boolean;
    v_grouped    bigint[];
    r            record;
BEGIN
    IF results IS NOT NULL AND cardinality(results) <> cardinality(leases) THEN
        RAISE EXCEPTION 'results has % elements, leases %', cardinality(results), cardinality(leases)
            USING ERRCODE = '22023';
    END IF;
    IF max_claims IS NULL OR max_claims NOT BETWEEN 0 AND 1000 THEN
        RAISE EXCEPTION 'max_claims must be between 0 and 1000' USING ERRCODE = '22023';
    END IF;
    IF max_claims > 0 AND (visibility_timeout_seconds IS NULL OR visibility_timeout_seconds < 1) THEN
        RAISE EXCEPTION 'visibility_timeout_seconds must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF leases IS NULL OR cardinality(leases) = 0 THEN
        RETURN;
    END IF;
    IF results IS NULL THEN
        results := array_fill(NULL::jsonb, ARRAY[cardinality(leases)]);
    END IF;

    -- 0. A result the database cannot take (results.sql): reported alone, it fails its step for good, with the
    --    reason as its error (status 'result_refused'; 'stale_lease' if the lease was no longer valid); in a
    --    batch, the call is refused as a whole (54000, naming the result), so that this failure never takes its
    --    locks beside other reports': report that step alone, and the others again. Results under 64 KiB skip it.
    SELECT y.ord, y.problem INTO v_problem_at, v_problem
    FROM (SELECT x.ord, tasker._result_problem(leases[x.ord], x.result) AS problem
          FROM unnest(results) WITH ORDINALITY AS x (result, ord)
          WHERE tasker._is_large_result(x.result)
          OFFSET 0) AS y
    WHERE y.problem IS NOT NULL
    ORDER BY y.ord LIMIT 1;
    IF v_problem IS NOT NULL THEN
        IF cardinality(leases) > 1 THEN
            RAISE EXCEPTION 'results[%]: %', v_problem_at, v_problem
                USING ERRCODE = '54000',
                      HINT = 'Report that success alone (it fails its step, with this reason) and the others again.';
        END IF;
        SELECT f.ok INTO v_failed
        FROM tasker_internal.fail(leases[1], jsonb_build_object('message', v_problem, 'result_refused', true), false) AS f;
        RETURN QUERY SELECT leases[1], false,
                            CASE WHEN v_failed THEN 'result_refused' ELSE 'stale_lease' END::text, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::jsonb, NULL::jsonb, NULL::jsonb,
                            NULL::integer, NULL::integer, NULL::timestamptz, NULL::jsonb, NULL::integer, NULL::jsonb, NULL::timestamptz;
        RETURN;
    END IF;

    -- 1. Before any lock: delete the messages of the steps these leases hold (see locks.sql).
    SELECT array_agg(s.task_id), array_agg(s.queue), array_agg(s.msg_id), array_agg(s.id),
           bool_or(s.conditional_children)
    INTO v_tasks, v_queues, v_msgs, v_steps, v_conditional
    FROM unnest(leases) AS l (lease)
    JOIN tasker.steps AS s ON s.id = tasker.lease_step_id(l.lease) AND s.lease = l.lease
    WHERE s.state = 'running';
    IF v_steps IS NULL THEN
        RETURN QUERY SELECT x.lease, false, 'stale_lease'::text, NULL::text, NULL::bigint, NULL::bigint, NULL::text,
                            NULL::text, NULL::jsonb, NULL::jsonb, NULL::jsonb, NULL::integer, NULL::integer,
                            NULL::timestamptz, NULL::jsonb, NULL::integer, NULL::jsonb, NULL::timestamptz
                     FROM unnest(leases) WITH ORDINALITY AS x (lease, ord) ORDER BY x.ord;
        RETURN;
    END IF;
    v_deleted := tasker._delete_messages_wait(v_queues, v_msgs);

    -- 2. Lock the steps and the children whose parent counts this changes (ascending id, see locks.sql), then
    --    finish the steps whose lease is (still) valid. Steps without children need no lock first: the guarded
    --    update below locks them (in ascending id order too). The task rows are not locked until step 4.
    --    A child with a condition may be omitted, which releases its own children and counts its task: then the
    --    tasks' whole lock set is taken instead (_lock_tasks, as failures and upkeep do), before anything else.
    v_children := ARRAY(SELECT e.child_id FROM tasker.step_edges AS e WHERE e.parent_id = ANY (v_steps));
    IF v_conditional THEN
        PERFORM tasker._lock_tasks(ARRAY(SELECT DISTINCT x.id FROM unnest(v_tasks) AS x (id)));
    ELSIF cardinality(v_children) > 0 THEN
        PERFORM 1 FROM tasker.steps AS s WHERE s.id = ANY (v_steps || v_children) ORDER BY s.id FOR NO KEY UPDATE OF s;
    END IF;
    WITH i AS MATERIALIZED ( -- in step id order, which is the order the update locks them in
        SELECT x.lease, x.result, tasker.lease_step_id(x.lease) AS id
        FROM unnest(leases, results) AS x (lease, result)
        ORDER BY 3
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'succeeded', result = i.result, finished_at = clock_timestamp(), lease_expires_at = NULL,
            updated_at = clock_timestamp(),
            result_bytes = tasker._large_result_bytes(i.result)
        FROM i
        WHERE s.id = i.id AND s.lease = i.lease AND s.state = 'running'
        RETURNING s.id, s.task_id, s.msg_id, s.attempts, s.worker_id, s.lease
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason)
        SELECT u.task_id, u.id, 'running', 'succeeded', u.attempts, u.worker_id, 'completed' FROM u
    )
    SELECT array_agg(u.id), array_agg(u.task_id), array_agg(u.lease) INTO v_ids, v_done_tasks, v_leases FROM u;

    IF cardinality(v_ids) IS DISTINCT FROM cardinality(v_steps) THEN
        -- Leases that went stale while we waited (re-claimed after expiring) keep a message.
        PERFORM tasker._restore_messages(v_steps, v_deleted);
    END IF;

    IF v_ids IS NOT NULL THEN
        IF cardinality(v_deleted) < cardinality(v_ids) THEN
            -- A message re-sent by upkeep meanwhile: delete it now (without waiting).
            FOR r IN SELECT s.queue, array_agg(s.msg_id) AS ids FROM tasker.steps AS s
                     WHERE s.id = ANY (v_ids) AND NOT s.msg_id = ANY (v_deleted) GROUP BY s.queue LOOP
                PERFORM tasker._delete_messages(r.queue, r.ids);
            END LOOP;
        END IF;

        -- 3. Children: count the finished parents off; those with none left are enqueued (one update each), and
        --    the first max_claims of them that the caller may claim (mine) are claimed for it. Those with a delay, a
        --    condition or a wait (later) go through _enqueue, which delays, omits or parks them, and are never
        --    claimed here. Nor are map steps (maps.sql): expanded by _enqueue, or, when this counted off their
        --    last instance, gathered later.
        SELECT array_agg(c.id), array_agg(c.n),
               array_agg(c.id) FILTER (WHERE c.ready AND NOT c.mine), array_agg(c.queue) FILTER (WHERE c.ready AND NOT c.mine),
               array_agg(c.task_id) FILTER (WHERE c.ready AND NOT c.mine),
               array_agg(c.attempts + 1) FILTER (WHERE c.ready AND NOT c.mine),
               array_agg(c.id) FILTER (WHERE c.mine), array_agg(c.queue) FILTER (WHERE c.mine),
               array_agg(c.task_id) FILTER (WHERE c.mine), array_agg(c.attempts + 1) FILTER (WHERE c.mine),
               array_agg(c.id) FILTER (WHERE c.ready_later), array_agg(c.id) FILTER (WHERE c.gather)
        INTO v_children, v_counts, v_ready, v_rqueues, v_rtasks, v_rattempts, v_mine, v_mqueues, v_mtasks, v_mattempts,
             v_later, v_gather
        FROM (SELECT c.*, c.claimable AND count(*) FILTER (WHERE c.claimable) OVER (ORDER BY c.id) <= max_claims AS mine
              FROM (SELECT s.id, s.queue, s.task_id, s.attempts, x.n,
                           s.state = 'pending' AND s.remaining_parents = x.n AND NOT d.delayed AS ready,
                           s.state = 'pending' AND s.remaining_parents = x.n AND d.delayed AS ready_later,
                           s.state = 'pending' AND s.remaining_parents = x.n AND NOT d.delayed
                               AND s.queue = ANY (v_queues) AND NOT coalesce(q.prioritized OR q.limited, true) AS claimable,
                           s.state = 'mapping' AND s.remaining_parents = x.n AS gather
                    FROM (SELECT e.child_id, count(*)::integer AS n FROM tasker.step_edges AS e
                          WHERE e.parent_id = ANY (v_ids) GROUP BY e.child_id) AS x
                    JOIN tasker.steps AS s ON s.id = x.child_id
                    CROSS JOIN LATERAL (SELECT s.delay_ms > 0 OR coalesce(s.not_before > clock_timestamp(), false)
                                               OR s.condition IS NOT NULL OR s.wait_signal IS NOT NULL
                                               OR s.for_each IS NOT NULL OR s.child IS NOT NULL AS delayed) AS d
                    LEFT JOIN tasker.queues AS q ON q.name = s.queue) AS c) AS c;
        IF v_children IS NOT NULL THEN
            IF v_ready IS NOT NULL THEN
                v_rmsgs := tasker._send_for(v_rqueues, v_rtasks, v_ready, v_rattempts);
            END IF;
            IF v_mine IS NOT NULL THEN
                -- Invisible from the start: visible again only if the lease expires (no wake-up either).
                v_until := clock_timestamp() + make_interval(secs => visibility_timeout_seconds);
                v_mmsgs := tasker._send_for(v_mqueues, v_mtasks, v_mine, v_mattempts, v_until, 1);
            END IF;
            WITH c AS MATERIALIZED (
                SELECT x.id, x.n, r.msg_id
                FROM unnest(v_children, v_counts) AS x (id, n)
                LEFT JOIN unnest(v_ready || v_mine, v_rmsgs || v_mmsgs) AS r (id, msg_id) ON r.id = x.id
            ), u AS (
                UPDATE tasker.steps AS s
                SET remaining_parents = s.remaining_parents - c.n,
                    state = CASE WHEN c.msg_id IS NOT NULL THEN 'enqueued' ELSE s.state END,
                    msg_id = coalesce(c.msg_id, s.msg_id), updated_at = clock_timestamp()
                FROM c
                WHERE s.id = c.id
                RETURNING s.id, s.task_id, s.attempts, c.msg_id IS NOT NULL AS ready
            )
            INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
            SELECT u.task_id, u.id, 'pending', 'enqueued', u.attempts, 'dependencies finished'
            FROM u WHERE u.ready;
            IF v_mine IS NOT NULL THEN
                v_claimed := tasker._start_attempts(v_mine, array_fill(v_until, ARRAY[cardinality(v_mine)]),
                                                    array_fill('enqueued'::text, ARRAY[cardinality(v_mine)]),
                                                    complete_and_claim.worker_id);
            END IF;
            IF v_later IS NOT NULL THEN
                -- Ready children with a delay or a condition: counted off above, enqueued (visible later) or
                -- omitted by _enqueue.
                PERFORM tasker._enqueue(v_later, 'dependencies finished');
            END IF;
            IF v_gather IS NOT NULL THEN
                -- Map steps whose last instance this counted off: gathered by the claim that reads the message
                -- this sends (maps.sql), under the lock set their end needs.
                PERFORM tasker._gather_later(v_gather);
            END IF;
        END IF;

        -- 4. Tasks: count the finished steps off; a task with none left succeeds. The task row is locked only now
        --    (ascending id), and the update reads its latest count: exactly one call sees it reach zero. A task
        --    still pending here was not started by its first claim (which skips a task row another claim holds,
        --    and that claim rolled back): it starts now.
        SELECT array_agg(l.id) FILTER (WHERE l.state = 'pending') INTO v_pending
        FROM (SELECT t.id, t.state FROM tasker.tasks AS t WHERE t.id = ANY (v_done_tasks) ORDER BY t.id
              FOR NO KEY UPDATE OF t) AS l;
        IF v_pending IS NOT NULL THEN
            WITH started AS (
                UPDATE tasker.tasks AS t SET state = 'running', started_at = clock_timestamp()
                WHERE t.id = ANY (v_pending)
                RETURNING t.id
            )
            INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
            SELECT started.id, 'pending', 'running', 'step completed' FROM started;
        END IF;
        WITH d AS (
            SELECT x.id, count(*)::integer AS n FROM unnest(v_done_tasks) AS x (id) GROUP BY x.id
        ), u AS (
            UPDATE tasker.tasks AS t
            SET unfinished_steps = t.unfinished_steps - d.n,
                state = CASE WHEN t.unfinished_steps = d.n THEN 'succeeded' ELSE t.state END,
                completed_at = CASE WHEN t.unfinished_steps = d.n THEN clock_timestamp() END,
                expires_at = CASE WHEN t.unfinished_steps = d.n THEN clock_timestamp() + t.retention END,
                updated_at = clock_timestamp()
            FROM d
            WHERE t.id = d.id AND t.state IN ('pending', 'running') -- not failed meanwhile by a map step (maps.sql);
                                                                 -- not completed_at IS NULL: its partial index made this 4 x slower
            RETURNING t.id, t.state, t.concurrency_group
        ), tr AS (
            -- Not announced by NOTIFY (see claim.sql): the operator follows tasker.task_transitions.
            INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
            SELECT u.id, 'running', 'succeeded', 'all steps finished' FROM u WHERE u.state = 'succeeded'
        )
        SELECT array_agg(u.id ORDER BY u.id) FILTER (WHERE u.state = 'succeeded' AND u.concurrency_group IS NOT NULL)
        INTO v_grouped FROM u;
        IF v_grouped IS NOT NULL THEN
            PERFORM tasker._concurrency_finished(v_grouped); -- flow control (concurrency.sql)
        END IF;
    END IF;

    RETURN QUERY
    SELECT x.lease, d.lease IS NOT NULL, CASE WHEN d.lease IS NOT NULL THEN 'succeeded' ELSE 'stale_lease' END,
           NULL::text, NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::jsonb, NULL::jsonb, NULL::jsonb,
           NULL::integer, NULL::integer, NULL::timestamptz, NULL::jsonb, NULL::integer, NULL::jsonb, NULL::timestamptz
    FROM unnest(leases) WITH ORDINALITY AS x (lease, ord)
    LEFT JOIN (SELECT DISTINCT y.lease FROM unnest(v_leases) AS y (lease)) AS d ON d.lease = x.lease
    ORDER BY x.ord;
    IF cardinality(v_claimed) > 0 THEN
        RETURN QUERY
        SELECT c.lease, true, 'claimed'::text, c.queue, c.step_id, c.task_id, c.step_name, c.handler, c.inputs, c.task_context,
               c.dependency_results, c.attempt, c.timeout_seconds, c.lease_expires_at, c.item, c.item_index,
               c.trace_context, c.ready_at
        FROM tasker._claimed(v_claimed) AS c;
    END IF;
END;
$fn$;

-- Reports many successes in one transaction (complete_and_claim without claiming). For each lease, in input
-- order: ok, and status 'succeeded' or 'stale_lease' (unknown lease, or the step is no longer running under it:
-- nothing was changed for it).
CREATE OR REPLACE FUNCTION tasker_internal.complete_many(leases uuid[], results jsonb[])
RETURNS TABLE (lease uuid, ok boolean, status text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT c.lease, c.ok, c.status
                 FROM tasker_internal.complete_and_claim(complete_many.leases, complete_many.results, 0, NULL) AS c;
END;
$fn$;

-- Reports a success: the step succeeds with result, ready children are enqueued, the message is deleted, the task
-- succeeds when nothing is left. ok = false, status 'stale_lease' when the lease is not (or no longer) valid.
CREATE OR REPLACE FUNCTION tasker_internal.complete(lease uuid, result jsonb DEFAULT NULL)
RETURNS TABLE (ok boolean, status text)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT c.ok, c.status
                 FROM tasker_internal.complete_many(ARRAY[complete.lease]::uuid[], ARRAY[complete.result]::jsonb[]) AS c;
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner. The steps it claims are on queues of the reported leases, which the
-- grants cover.
CREATE OR REPLACE FUNCTION tasker.complete_and_claim(leases uuid[], results jsonb[], max_claims integer,
                             visibility_timeout_seconds integer, worker_id text DEFAULT NULL)
RETURNS TABLE (lease uuid, ok boolean, status text, queue text, step_id bigint, task_id bigint, step_name text,
               handler text, inputs jsonb, task_context jsonb, dependency_results jsonb, attempt integer,
               timeout_seconds integer, lease_expires_at timestamptz, item jsonb, item_index integer,
               trace_context jsonb, ready_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_leases(complete_and_claim.leases);
    RETURN QUERY SELECT * FROM tasker_internal.complete_and_claim(complete_and_claim.leases, complete_and_claim.results,
        complete_and_claim.max_claims, complete_and_claim.visibility_timeout_seconds, complete_and_claim.worker_id);
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.complete_many(leases uuid[], results jsonb[])
RETURNS TABLE (lease uuid, ok boolean, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_leases(complete_many.leases);
    RETURN QUERY SELECT * FROM tasker_internal.complete_many(complete_many.leases, complete_many.results);
END;
$fn$;

-- The worker-facing entry point: checks the caller's queue grants (roles.sql), then runs the implementation above
-- with the privileges of tasker's owner.
CREATE OR REPLACE FUNCTION tasker.complete(lease uuid, result jsonb DEFAULT NULL)
RETURNS TABLE (ok boolean, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $fn$
BEGIN
    PERFORM tasker._authorize_leases(ARRAY[complete.lease]);
    RETURN QUERY SELECT * FROM tasker_internal.complete(complete.lease, complete.result);
END;
$fn$;
