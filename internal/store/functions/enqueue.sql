-- When a step that becomes ready now is first visible: NULL (at once) unless it has a delay or a not_before still
-- ahead (migration 0012), else the later of now + delay and not_before.
CREATE OR REPLACE FUNCTION tasker._visible_at(p_delay_ms bigint, p_not_before timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $fn$
    SELECT CASE WHEN p_delay_ms > 0 OR p_not_before > clock_timestamp()
                THEN greatest(clock_timestamp() + p_delay_ms * interval '1 millisecond', p_not_before) END
$fn$;

-- Moves each step to enqueued (from pending, failed, ...), recording transitions — except pending steps whose
-- condition is false, which are omitted instead (conditions.sql), steps that wait for a signal, which wait
-- (waits.sql: no message; done at once if the signal came already), map steps, which are expanded into their
-- instances (maps.sql), child workflow steps, which are expanded into their child's steps (children.sql), and
-- map and child workflow steps whose instances or child have all finished, which are gathered; the caller then holds
-- their task's lock set (_lock_tasks). An omitted step counts off its children, which may become ready and be
-- omitted in turn: this goes round by round, not recursively, so a long chain of omitted steps needs no stack.
-- Children made ready that way are enqueued with the reason 'dependencies finished'. A map step that fails (its
-- forEach gives no array) fails its task: nothing else of that task is enqueued. Returns how many steps were
-- enqueued.
CREATE OR REPLACE FUNCTION tasker._enqueue(p_step_ids bigint[], p_reason text) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids      bigint[] := p_step_ids;
    v_released bigint[] := '{}';
    v_check    bigint[] := p_step_ids;
    v_omit     bigint[];
    v_wait     bigint[];
    v_expand   bigint[];
    v_child    bigint[];
    v_gather   bigint[];
    v_done     bigint[];
    v_ready    bigint[];
    v_stopped  bigint[] := '{}';
    v_round    integer := 0;
    v_n        integer := 0;
    r          record;
BEGIN
    LOOP
        -- One look at the steps of this round: those whose condition is false are omitted (conditions.sql);
        -- those that wait for a signal wait, never sent to a queue (waits.sql); map steps are expanded when ready
        -- and gathered when their instances have finished (maps.sql), and so are child workflow steps
        -- (children.sql).
        SELECT coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE c.omit), '{}'),
               coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE NOT c.omit AND c.wait_signal IS NOT NULL
                                                              AND c.state IN ('pending', 'failed')), '{}'),
               coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE NOT c.omit AND c.for_each IS NOT NULL
                                                              AND c.state = 'pending' AND c.map_size IS NULL), '{}'),
               coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE NOT c.omit AND c.child IS NOT NULL
                                                              AND c.for_each IS NULL AND c.state = 'pending'
                                                              AND c.child_size IS NULL), '{}'),
               coalesce(array_agg(c.id ORDER BY c.id) FILTER (WHERE c.state = 'mapping' AND c.remaining_parents = 0), '{}')
        INTO v_omit, v_wait, v_expand, v_child, v_gather
        FROM (SELECT s.id, s.state, s.wait_signal, s.for_each, s.map_size, s.child, s.child_size, s.remaining_parents,
                     s.state = 'pending' AND s.condition IS NOT NULL
                     AND NOT coalesce(jsonb_path_match(tasker._condition_document(s.id), s.condition, silent => true),
                                      false) AS omit
              FROM tasker.steps AS s WHERE s.id = ANY (v_check)) AS c;
        EXIT WHEN cardinality(v_omit) = 0 AND cardinality(v_wait) = 0 AND cardinality(v_expand) = 0
                  AND cardinality(v_child) = 0 AND cardinality(v_gather) = 0;
        v_ready := '{}';
        IF cardinality(v_omit) > 0 THEN
            v_ready := tasker._omit_steps(v_omit);
        END IF;
        IF cardinality(v_wait) > 0 THEN
            v_ready := v_ready || tasker._start_waits(v_wait, CASE WHEN v_round = 0 THEN p_reason
                                                                   ELSE 'dependencies finished' END);
        END IF;
        IF cardinality(v_expand) > 0 THEN
            r := tasker._expand_maps(v_expand);
            v_ready := v_ready || r.ready;
            v_stopped := v_stopped || r.stopped;
        END IF;
        IF cardinality(v_child) > 0 THEN
            r := tasker._expand_children(v_child);
            v_ready := v_ready || r.ready;
            v_stopped := v_stopped || r.stopped;
        END IF;
        IF cardinality(v_gather) > 0 THEN
            r := tasker._gather_maps(v_gather);
            v_ready := v_ready || r.ready;
            v_stopped := v_stopped || r.stopped;
        END IF;
        v_done := v_omit || v_wait || v_expand || v_child || v_gather;
        v_ids := ARRAY(SELECT x.id FROM unnest(v_ids) AS x (id) WHERE NOT x.id = ANY (v_done));
        v_released := ARRAY(SELECT x.id FROM unnest(v_released) AS x (id) WHERE NOT x.id = ANY (v_done))
                      || v_ready;
        v_check := v_ready;
        v_round := v_round + 1;
    END LOOP;
    IF cardinality(v_stopped) > 0 THEN -- failed by a map step meanwhile: their steps have all stopped
        v_ids := ARRAY(SELECT s.id FROM tasker.steps AS s WHERE s.id = ANY (v_ids) AND NOT s.task_id = ANY (v_stopped));
        v_released := ARRAY(SELECT s.id FROM tasker.steps AS s
                            WHERE s.id = ANY (v_released) AND NOT s.task_id = ANY (v_stopped));
    END IF;
    IF cardinality(v_ids) > 0 THEN
        v_n := tasker._enqueue_now(v_ids, p_reason);
    END IF;
    IF cardinality(v_released) > 0 THEN
        v_n := v_n + tasker._enqueue_now(v_released, 'dependencies finished');
    END IF;
    RETURN v_n;
END;
$fn$;

-- Sends a message for each step and moves it to enqueued, recording transitions (_enqueue, once conditions are
-- settled). A step with a delay or a not_before ahead (_visible_at) gets a message that is visible only then, and
-- next_attempt_at says when. Returns how many steps were enqueued.
CREATE OR REPLACE FUNCTION tasker._enqueue_now(p_step_ids bigint[], p_reason text) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids     bigint[];
    v_queues  text[];
    v_tasks   bigint[];
    v_att     integer[];
    v_states  text[];
    v_msgs    bigint[];
    v_visible timestamptz[];
    v_now     integer[];
    v_sent    bigint[];
    i         integer;
BEGIN
    SELECT array_agg(s.id), array_agg(s.queue), array_agg(s.task_id), array_agg(s.attempts + 1), array_agg(s.state),
           array_agg(tasker._visible_at(s.delay_ms, s.not_before))
    INTO v_ids, v_queues, v_tasks, v_att, v_states, v_visible
    FROM tasker.steps AS s WHERE s.id = ANY (p_step_ids);
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    v_now := ARRAY(SELECT x.ord FROM unnest(v_visible) WITH ORDINALITY AS x (at, ord) WHERE x.at IS NULL ORDER BY x.ord);
    IF cardinality(v_now) = cardinality(v_ids) THEN -- no delays: the usual case
        v_msgs := tasker._send_for(v_queues, v_tasks, v_ids, v_att);
    ELSE
        -- Delayed steps are few: one message each, visible at its own time; the others together.
        v_msgs := array_fill(NULL::bigint, ARRAY[cardinality(v_ids)]);
        IF cardinality(v_now) > 0 THEN
            v_sent := tasker._send_for(ARRAY(SELECT v_queues[o.i] FROM unnest(v_now) WITH ORDINALITY AS o (i, n) ORDER BY o.n),
                                       ARRAY(SELECT v_tasks[o.i] FROM unnest(v_now) WITH ORDINALITY AS o (i, n) ORDER BY o.n),
                                       ARRAY(SELECT v_ids[o.i] FROM unnest(v_now) WITH ORDINALITY AS o (i, n) ORDER BY o.n),
                                       ARRAY(SELECT v_att[o.i] FROM unnest(v_now) WITH ORDINALITY AS o (i, n) ORDER BY o.n));
            FOR i IN 1 .. cardinality(v_now) LOOP
                v_msgs[v_now[i]] := v_sent[i];
            END LOOP;
        END IF;
        FOR i IN 1 .. cardinality(v_ids) LOOP
            CONTINUE WHEN v_visible[i] IS NULL;
            v_msgs[i] := (tasker._send(v_queues[i], ARRAY[v_tasks[i]], ARRAY[v_ids[i]], ARRAY[v_att[i]], v_visible[i]))[1];
        END LOOP;
    END IF;
    WITH c AS MATERIALIZED (
        SELECT x.id, x.msg_id, x.from_state, x.visible
        FROM unnest(v_ids, v_msgs, v_states, v_visible) AS x (id, msg_id, from_state, visible)
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'enqueued', msg_id = c.msg_id, finished_at = NULL, next_attempt_at = c.visible,
            lease_expires_at = NULL, updated_at = clock_timestamp()
        FROM c
        WHERE s.id = c.id
        RETURNING s.id, s.task_id, s.attempts, c.from_state, c.visible
    )
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
    SELECT u.task_id, u.id, u.from_state, 'enqueued', u.attempts, p_reason,
           CASE WHEN u.visible IS NOT NULL THEN jsonb_build_object('visible_at', u.visible) END
    FROM u;
    RETURN cardinality(v_ids);
END;
$fn$;

-- Counts steps that just became succeeded or resolved off their children, and enqueues the children that became
-- ready when p_enqueue (their task is active). Used by the operator actions (one step); complete_many inlines a
-- batch-friendly version of the same.
CREATE OR REPLACE FUNCTION tasker._release_children(p_step_ids bigint[], p_enqueue boolean) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ready bigint[];
BEGIN
    v_ready := tasker._count_off_children(p_step_ids);
    IF p_enqueue AND cardinality(v_ready) > 0 THEN
        PERFORM tasker._enqueue(v_ready, 'dependencies finished');
    END IF;
END;
$fn$;

-- Counts steps that just became done (succeeded, resolved, omitted) off their children's remaining parents, and
-- returns the children that became ready (pending, none left), and the map steps whose instances have all
-- finished (mapping, none left: _enqueue gathers them).
CREATE OR REPLACE FUNCTION tasker._count_off_children(p_step_ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_children bigint[];
    v_ready    bigint[];
BEGIN
    v_children := ARRAY(SELECT DISTINCT e.child_id FROM tasker.step_edges AS e WHERE e.parent_id = ANY (p_step_ids));
    IF cardinality(v_children) = 0 THEN
        RETURN '{}';
    END IF;
    WITH u AS (
        UPDATE tasker.steps AS c
        SET remaining_parents = c.remaining_parents
                                - (SELECT count(*) FROM tasker.step_edges AS e
                                   WHERE e.child_id = c.id AND e.parent_id = ANY (p_step_ids))::integer,
            updated_at = clock_timestamp()
        WHERE c.id = ANY (v_children)
        RETURNING c.id, c.state, c.remaining_parents
    )
    SELECT coalesce(array_agg(u.id) FILTER (WHERE u.remaining_parents = 0 AND u.state IN ('pending', 'mapping')), '{}')
    INTO v_ready
    FROM u;
    RETURN v_ready;
END;
$fn$;

-- Each occurrence of a task id in p_task_ids is one of its steps that just left the unfinished states; a task with
-- none left succeeds. Used by the operator actions (a step at a time); complete_many inlines a batch version.
CREATE OR REPLACE FUNCTION tasker._count_finished(p_task_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids     bigint[];
    v_counts  integer[];
    v_states  text[];
    v_grouped bigint[];
BEGIN
    SELECT array_agg(d.id), array_agg(d.n), array_agg(t.state) INTO v_ids, v_counts, v_states
    FROM (SELECT x.id, count(*)::integer AS n FROM unnest(p_task_ids) AS x (id) GROUP BY x.id) AS d
    JOIN tasker.tasks AS t ON t.id = d.id
    WHERE t.id = ANY (p_task_ids);

    WITH u AS (
        UPDATE tasker.tasks AS t
        SET unfinished_steps = t.unfinished_steps - v_counts[array_position(v_ids, t.id)],
            state = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                              AND t.state IN ('pending', 'running') THEN 'succeeded' ELSE t.state END,
            started_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                              THEN coalesce(t.started_at, clock_timestamp()) ELSE t.started_at END,
            completed_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                                     AND t.state IN ('pending', 'running')
                                THEN clock_timestamp() ELSE t.completed_at END,
            expires_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                                   AND t.state IN ('pending', 'running')
                              THEN clock_timestamp() + t.retention ELSE t.expires_at END,
            updated_at = clock_timestamp()
        WHERE t.id = ANY (v_ids)
        RETURNING t.id, t.state, t.concurrency_group
    ), tr AS (
        INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
        SELECT u.id, v_states[array_position(v_ids, u.id)], u.state, 'all steps finished'
        FROM u WHERE u.state <> v_states[array_position(v_ids, u.id)]
    )
    SELECT array_agg(u.id ORDER BY u.id)
           FILTER (WHERE u.state <> v_states[array_position(v_ids, u.id)] AND u.concurrency_group IS NOT NULL)
    INTO v_grouped FROM u;
    IF v_grouped IS NOT NULL THEN
        PERFORM tasker._concurrency_finished(v_grouped); -- flow control (concurrency.sql)
    END IF;
END;
$fn$;
