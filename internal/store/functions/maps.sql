-- Map steps (forEach, migration 0015). A step with a for_each path is expanded when it becomes ready (_enqueue,
-- under its task's lock set): the path is evaluated over {"context": ..., "deps": {<dependency>: <result>}} (the
-- document of conditions.sql) and must give an array of at most max_map_items() elements; each element becomes an
-- instance — a step of the same task named "<step>[<index>]", with the map step's handler, queue, inputs, retry
-- policy, timeout and delay, its item and item_index, and the map step's dependencies — and the map step is
-- 'mapping' until every instance has finished. The instances are the map step's parents from then on (one edge
-- each), so they count it off as any parent would; the completion that counts off the last one only sends the map
-- step a message (complete.sql: it does not hold the lock set a map step's end needs), and the claim that reads
-- that message gathers it (claim.sql) — as does _enqueue, when an operator action or a signal finishes the last
-- instance. Gathering: the map step succeeds with its instances' results as one array, in index order (null for
-- an instance resolved by hand), and its children proceed. An empty array succeeds at once with []; a path that
-- finds no array, or one that is too long, fails the step for good (the same document gives the same items: a
-- retry cannot help).

-- The most instances a map step may have (a longer array fails the step).
CREATE OR REPLACE FUNCTION tasker.max_map_items() RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$ SELECT 10000 $fn$;

-- Why p_path cannot be a step's forEach (NULL: it can): not a SQL/JSON path, or a predicate (which gives true or
-- false, never an array).
CREATE OR REPLACE FUNCTION tasker._for_each_problem(p_path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_problem text := tasker._path_problem(p_path); -- NULL for NULL
BEGIN
    IF p_path IS NULL OR v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    IF jsonb_typeof(jsonb_path_query_first('{"context": {}, "deps": {}}', p_path::jsonpath, silent => true)) = 'boolean' THEN
        RETURN 'must be a path to an array, e.g. $.context.items or $.deps.list.files, not a predicate';
    END IF;
    RETURN NULL;
END;
$fn$;

-- Fails map step p_step (pending or mapping) for good with p_problem — or a child workflow step (children.sql) whose
-- arguments cannot be taken or whose outputs are too large — and its task unless that has finished already, or the
-- step is of a child workflow that runs again (children.sql). Returns whether the task stopped. The caller holds the
-- task's lock set.
CREATE OR REPLACE FUNCTION tasker._fail_map(p_step tasker.steps, p_problem text) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_meta jsonb := jsonb_strip_nulls(jsonb_build_object('for_each', p_step.for_each::text,
                                                         'template', p_step.child ->> 'template'));
BEGIN
    UPDATE tasker.steps AS x
    SET state = 'failed', last_error = jsonb_build_object('message', p_problem) || v_meta,
        attempts = CASE WHEN p_step.state = 'pending' THEN x.attempts + 1 ELSE x.attempts END,
        started_at = coalesce(x.started_at, clock_timestamp()), finished_at = clock_timestamp(),
        next_attempt_at = NULL, updated_at = clock_timestamp()
    WHERE x.id = p_step.id;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
    SELECT x.task_id, x.id, p_step.state, 'failed', x.attempts, p_problem, v_meta
    FROM tasker.steps AS x WHERE x.id = p_step.id;
    IF (SELECT t.completed_at IS NULL FROM tasker.tasks AS t WHERE t.id = p_step.task_id) THEN
        PERFORM tasker._stop_task(p_step.task_id, 'failed', p_step.id, format('step %s failed', p_step.name));
    END IF;
    RETURN (SELECT t.completed_at IS NOT NULL FROM tasker.tasks AS t WHERE t.id = p_step.task_id);
END;
$fn$;

-- Expands the pending map steps of p_step_ids (see above): their instances are enqueued, an empty map succeeds,
-- a bad one fails its task. Returns the children that became ready (of empty maps), and the tasks that failed
-- (whose other steps the caller must not enqueue). The caller holds the tasks' lock sets.
CREATE OR REPLACE FUNCTION tasker._expand_maps(p_step_ids bigint[], OUT ready bigint[], OUT stopped bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
    s       tasker.steps%ROWTYPE;
    v_items jsonb;
    v_n     integer;
    v_ids   bigint[];
BEGIN
    ready := '{}';
    stopped := '{}';
    FOR s IN SELECT * FROM tasker.steps AS x
             WHERE x.id = ANY (p_step_ids) AND x.state = 'pending' AND x.for_each IS NOT NULL AND x.map_size IS NULL
             ORDER BY x.id LOOP
        CONTINUE WHEN s.task_id = ANY (stopped);
        v_items := jsonb_path_query_first(tasker._condition_document(s.id), s.for_each, silent => true);
        IF v_items IS NULL OR jsonb_typeof(v_items) <> 'array'
           OR jsonb_array_length(v_items) > tasker.max_map_items() THEN
            IF tasker._fail_map(s, CASE
                WHEN v_items IS NULL THEN format('forEach %s found nothing', s.for_each::text)
                WHEN jsonb_typeof(v_items) <> 'array'
                    THEN format('forEach %s gave %s, not an array', s.for_each::text, jsonb_typeof(v_items))
                ELSE format('forEach %s gave %s items: at most %s are allowed', s.for_each::text,
                            jsonb_array_length(v_items), tasker.max_map_items())
            END) THEN
                stopped := stopped || s.task_id;
            END IF;
            CONTINUE;
        END IF;
        v_n := jsonb_array_length(v_items);

        IF v_n = 0 THEN
            UPDATE tasker.steps AS x
            SET state = 'succeeded', result = '[]', map_size = 0, attempts = x.attempts + 1,
                started_at = clock_timestamp(), finished_at = clock_timestamp(), next_attempt_at = NULL,
                updated_at = clock_timestamp()
            WHERE x.id = s.id;
            INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
            VALUES (s.task_id, s.id, 'pending', 'succeeded', s.attempts + 1, 'forEach gave no items',
                    jsonb_build_object('for_each', s.for_each::text, 'items', 0));
            PERFORM tasker._count_finished(ARRAY[s.task_id]);
            ready := ready || tasker._count_off_children(ARRAY[s.id]);
            CONTINUE;
        END IF;

        -- The instances, in index order (identity values follow the order of the rows inserted).
        WITH i AS (
            INSERT INTO tasker.steps (task_id, name, handler, queue, inputs, max_attempts, backoff_base_ms,
                                      backoff_max_ms, backoff_jitter, timeout_seconds, parent_count,
                                      remaining_parents, delay_ms, not_before, map_step_id, item_index, item, child,
                                      child_of, context)
            SELECT s.task_id, s.name || '[' || (x.ord - 1) || ']', s.handler, s.queue, s.inputs, s.max_attempts,
                   s.backoff_base_ms, s.backoff_max_ms, s.backoff_jitter, s.timeout_seconds, s.parent_count, 0,
                   s.delay_ms, s.not_before, s.id, (x.ord - 1)::integer, x.item, s.child, s.child_of, s.context
            FROM jsonb_array_elements(v_items) WITH ORDINALITY AS x (item, ord)
            ORDER BY x.ord
            RETURNING id
        )
        SELECT array_agg(i.id ORDER BY i.id) INTO v_ids FROM i;
        -- Each instance depends on what the map step depends on (its handler receives their results, as the map
        -- step's would), and the map step on each instance.
        INSERT INTO tasker.step_edges (task_id, parent_id, child_id)
        SELECT s.task_id, e.parent_id, i.id
        FROM tasker.step_edges AS e CROSS JOIN unnest(v_ids) AS i (id)
        WHERE e.child_id = s.id;
        INSERT INTO tasker.step_edges (task_id, parent_id, child_id)
        SELECT s.task_id, i.id, s.id FROM unnest(v_ids) AS i (id);

        UPDATE tasker.steps AS x
        SET state = 'mapping', map_size = v_n, parent_count = x.parent_count + v_n, remaining_parents = v_n,
            attempts = x.attempts + 1, started_at = clock_timestamp(), next_attempt_at = NULL,
            updated_at = clock_timestamp()
        WHERE x.id = s.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        VALUES (s.task_id, s.id, 'pending', 'mapping', s.attempts + 1, format('forEach gave %s items', v_n),
                jsonb_build_object('for_each', s.for_each::text, 'items', v_n));
        UPDATE tasker.tasks AS t
        SET step_count = t.step_count + v_n, unfinished_steps = t.unfinished_steps + v_n, updated_at = clock_timestamp()
        WHERE t.id = s.task_id;
        IF s.child IS NULL THEN
            PERFORM tasker._enqueue_now(v_ids, format('instance of %s', s.name));
        ELSE -- instances of a child workflow: expanded by _enqueue's next round (children.sql)
            ready := ready || v_ids;
        END IF;
    END LOOP;
END;
$fn$;

-- Gathers the map steps of p_step_ids that are mapping with every instance finished (see above). Returns the
-- children that became ready, and the tasks that failed (a gathered result over max_dependency_results_bytes()).
-- The caller holds the tasks' lock sets.
CREATE OR REPLACE FUNCTION tasker._gather_maps(p_step_ids bigint[], OUT ready bigint[], OUT stopped bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
    s        tasker.steps%ROWTYPE;
    v_result jsonb;
    v_bytes  bigint;
BEGIN
    ready := '{}';
    stopped := '{}';
    FOR s IN SELECT * FROM tasker.steps AS x
             WHERE x.id = ANY (p_step_ids) AND x.state = 'mapping' AND x.remaining_parents = 0
             ORDER BY x.id LOOP
        CONTINUE WHEN s.task_id = ANY (stopped);
        IF s.for_each IS NULL THEN -- a child workflow step (children.sql)
            v_result := tasker._child_result(s.id);
            v_bytes := pg_column_size(v_result);
        ELSE
            SELECT coalesce(jsonb_agg(coalesce(i.result, 'null'::jsonb) ORDER BY i.item_index), '[]'::jsonb),
                   coalesce(sum(pg_column_size(i.result)), 0)
            INTO v_result, v_bytes
            FROM tasker.steps AS i WHERE i.map_step_id = s.id;
        END IF;
        IF v_bytes > tasker.max_dependency_results_bytes() THEN
            IF tasker._fail_map(s, format('the results of its %s take %s bytes: more than the limit of %s',
                                          CASE WHEN s.for_each IS NULL THEN 'child workflow'
                                               ELSE s.map_size || ' instances' END,
                                          v_bytes, tasker.max_dependency_results_bytes())) THEN
                stopped := stopped || s.task_id;
            END IF;
            CONTINUE;
        END IF;
        UPDATE tasker.steps AS x
        SET state = 'succeeded', result = v_result, result_bytes = tasker._large_result_bytes(v_result),
            finished_at = clock_timestamp(), next_attempt_at = NULL, updated_at = clock_timestamp()
        WHERE x.id = s.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        VALUES (s.task_id, s.id, 'mapping', 'succeeded', s.attempts,
                CASE WHEN s.for_each IS NULL THEN 'child workflow finished' ELSE 'all instances finished' END,
                CASE WHEN s.for_each IS NULL THEN jsonb_build_object('steps', s.child_size)
                     ELSE jsonb_build_object('items', s.map_size) END);
        PERFORM tasker._count_finished(ARRAY[s.task_id]);
        ready := ready || tasker._count_off_children(ARRAY[s.id]);
    END LOOP;
END;
$fn$;

-- Sends each map step of p_step_ids (mapping, its last instance just counted off by a completion that does not
-- hold the task's lock set) a message on its queue: the claim that reads it gathers the step (claim.sql).
CREATE OR REPLACE FUNCTION tasker._gather_later(p_step_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids    bigint[];
    v_queues text[];
    v_tasks  bigint[];
    v_att    integer[];
    v_msgs   bigint[];
BEGIN
    SELECT array_agg(s.id ORDER BY s.id), array_agg(s.queue ORDER BY s.id), array_agg(s.task_id ORDER BY s.id),
           array_agg(s.attempts ORDER BY s.id)
    INTO v_ids, v_queues, v_tasks, v_att
    FROM tasker.steps AS s WHERE s.id = ANY (p_step_ids) AND s.state = 'mapping';
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    v_msgs := tasker._send_for(v_queues, v_tasks, v_ids, v_att);
    UPDATE tasker.steps AS s SET msg_id = m.msg_id, updated_at = clock_timestamp()
    FROM unnest(v_ids, v_msgs) AS m (id, msg_id)
    WHERE s.id = m.id;
END;
$fn$;
