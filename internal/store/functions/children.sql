-- Child workflows (migration 0019). A step with a child document runs another workflow instead of a handler:
--   {"template": <name, for people>, "context": <the child's context, its parameters resolved so far under
--    "params">, "arguments_from": {<parameter>: <SQL/JSON path>}, "parameters": {<parameter>: {"type": ...,
--    "enum": [...]}}, "queue": <default queue of its steps>, "steps": [<admit's step objects>],
--    "outputs": {<name>: <SQL/JSON path>}}
-- stored at admission (the caller resolved the template then: later edits of it change nothing). When the step
-- becomes ready, _enqueue expands it (under its task's lock set): arguments_from is evaluated over the document of
-- conditions.sql ({"context", "deps", and "item" for a map instance}), each value checked against its parameter's
-- type and enum and set under the child's "params"; the child's steps are inserted into the same task, named
-- "<step>/<child step>", child_of naming the step, with the child's context; the child's leaves (steps no other
-- child step depends on) become the step's parents; and the step is 'mapping' until they have all finished. The
-- completion that counts off the last leaf sends the step a message, and the claim that reads it gathers it
-- (maps.sql): the step succeeds with the child's outputs — each declared output's path evaluated over
-- {"steps": {<child step>: <result>}, "context": <the child's context>}, or without declared outputs an object of
-- the leaves' results by name. A child step that fails for good fails the child: the step is run again (the child
-- discarded and expanded afresh, its first steps visible after the step's backoff) while its retry policy allows,
-- else it fails, and so on up to the task. Steps of
-- a child see dependency results under their own names (without the prefix).

-- How deep child workflows may nest (a child's step running a child ...).
CREATE OR REPLACE FUNCTION tasker.max_child_depth() RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$ SELECT 5 $fn$;

-- A step's name within its child workflow (its own name for the task's steps): the part after the last '/'.
CREATE OR REPLACE FUNCTION tasker._local_name(p_name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$ SELECT regexp_replace(p_name, '^.*/', '') $fn$;

-- Why p_outputs cannot be a task's or child's outputs (NULL: it can): an object of at most 64 names (letters,
-- digits, '_' and '-', at most 63) to SQL/JSON paths.
CREATE OR REPLACE FUNCTION tasker._outputs_problem(p_outputs jsonb, p_path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    o record;
    v_problem text;
BEGIN
    IF p_outputs IS NULL OR p_outputs = 'null'::jsonb THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_outputs) <> 'object' THEN
        RETURN format('%s: must be an object of output names to paths, not %s', p_path, jsonb_typeof(p_outputs));
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(p_outputs)) > 64 THEN
        RETURN format('%s: at most 64 outputs', p_path);
    END IF;
    FOR o IN SELECT e.key, e.value FROM jsonb_each(p_outputs) AS e ORDER BY e.key LOOP
        IF o.key !~ '^[A-Za-z0-9_-]{1,63}$' THEN
            RETURN format('%s: %s is not a valid output name (letters, digits, _ and -, at most 63)', p_path,
                          quote_literal(o.key));
        END IF;
        IF jsonb_typeof(o.value) <> 'string' THEN
            RETURN format('%s.%s: must be a SQL/JSON path (a string), not %s', p_path, o.key, jsonb_typeof(o.value));
        END IF;
        v_problem := tasker._path_problem(o.value #>> '{}');
        IF v_problem IS NOT NULL THEN
            RETURN format('%s.%s: %s', p_path, o.key, v_problem);
        END IF;
    END LOOP;
    RETURN NULL;
END;
$fn$;

-- The first problem with the child documents of p_steps (admit's step objects under p_path, at nesting depth
-- p_depth), or NULL.
CREATE OR REPLACE FUNCTION tasker._children_problem(p_steps jsonb, p_path text, p_depth integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    x record;
    v_problem text;
BEGIN
    IF jsonb_typeof(p_steps) IS DISTINCT FROM 'array' THEN
        RETURN NULL;
    END IF;
    FOR x IN SELECT e.ord - 1 AS i, e.s -> 'child' AS child
             FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS e (s, ord)
             WHERE e.s -> 'child' IS NOT NULL AND e.s -> 'child' <> 'null'::jsonb ORDER BY e.ord LOOP
        v_problem := tasker._child_problem(x.child, format('%s[%s].child', p_path, x.i), p_depth);
        IF v_problem IS NOT NULL THEN
            RETURN v_problem;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$fn$;

-- The first problem with one child document (see above) at p_path, nested p_depth deep, or NULL: its shape, its
-- steps (as admit checks a task's), its paths, and the children of its own steps.
CREATE OR REPLACE FUNCTION tasker._child_problem(p_child jsonb, p_path text, p_depth integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    c_keys  CONSTANT text[] := ARRAY['template', 'context', 'arguments_from', 'parameters', 'queue', 'steps', 'outputs'];
    c_types CONSTANT text[] := ARRAY['string', 'number', 'integer', 'boolean', 'object', 'array'];
    v_problem text;
    a record;
BEGIN
    IF p_depth > tasker.max_child_depth() THEN
        RETURN format('%s: child workflows nest at most %s deep', p_path, tasker.max_child_depth());
    END IF;
    IF jsonb_typeof(p_child) <> 'object' THEN
        RETURN format('%s: must be a JSON object, not %s', p_path, jsonb_typeof(p_child));
    END IF;
    v_problem := tasker._unknown_key(p_child, c_keys, p_path);
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    IF coalesce(length(p_child ->> 'template'), 0) NOT BETWEEN 1 AND 253 OR jsonb_typeof(p_child -> 'template') <> 'string' THEN
        RETURN format('%s.template: required, a name of 1 to 253 characters', p_path);
    END IF;
    IF coalesce(p_child ->> 'queue', '') !~ '^([a-z0-9_]{1,40})?$' THEN
        RETURN format('%s.queue: %s is not a valid queue name', p_path, quote_nullable(p_child ->> 'queue'));
    END IF;
    IF jsonb_typeof(p_child -> 'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(p_child -> 'steps') = 0 THEN
        RETURN format('%s.steps: required, an array of at least one step', p_path);
    END IF;
    IF jsonb_array_length(p_child -> 'steps') > 1000 THEN
        RETURN format('%s.steps: at most 1000 steps', p_path);
    END IF;
    IF p_child ? 'arguments_from' THEN
        IF jsonb_typeof(p_child -> 'arguments_from') <> 'object' THEN
            RETURN format('%s.arguments_from: must be an object of parameter names to paths', p_path);
        END IF;
        FOR a IN SELECT e.key, e.value FROM jsonb_each(p_child -> 'arguments_from') AS e ORDER BY e.key LOOP
            v_problem := CASE WHEN jsonb_typeof(a.value) <> 'string' THEN 'must be a SQL/JSON path (a string)'
                              ELSE tasker._path_problem(a.value #>> '{}') END;
            IF v_problem IS NOT NULL THEN
                RETURN format('%s.arguments_from.%s: %s', p_path, a.key, v_problem);
            END IF;
        END LOOP;
    END IF;
    IF p_child ? 'parameters' THEN
        IF jsonb_typeof(p_child -> 'parameters') <> 'object' THEN
            RETURN format('%s.parameters: must be an object of parameter names to {type, enum}', p_path);
        END IF;
        FOR a IN SELECT e.key, e.value FROM jsonb_each(p_child -> 'parameters') AS e ORDER BY e.key LOOP
            IF jsonb_typeof(a.value) <> 'object' OR NOT coalesce(a.value ->> 'type', 'string') = ANY (c_types)
               OR jsonb_typeof(coalesce(a.value -> 'enum', '[]')) <> 'array' THEN
                RETURN format('%s.parameters.%s: must be {"type": one of %s, "enum": [...]}', p_path, a.key,
                              array_to_string(c_types, ', '));
            END IF;
        END LOOP;
    END IF;
    v_problem := coalesce(tasker._outputs_problem(p_child -> 'outputs', p_path || '.outputs'),
                          tasker._admit_document_problem(jsonb_build_object('steps', p_child -> 'steps'), p_path),
                          tasker._steps_problem(p_child -> 'steps', nullif(p_child ->> 'queue', ''), p_path || '.steps'));
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    v_problem := tasker._find_cycle(p_child -> 'steps');
    IF v_problem IS NOT NULL THEN
        RETURN format('%s.steps: dependency cycle: %s', p_path, v_problem);
    END IF;
    RETURN tasker._children_problem(p_child -> 'steps', p_path || '.steps', p_depth + 1);
END;
$fn$;

-- The queues named by the steps of the child workflows in p_steps (admit's step objects), at any depth.
CREATE OR REPLACE FUNCTION tasker._child_queues(p_steps jsonb) RETURNS SETOF text
LANGUAGE sql IMMUTABLE AS $fn$
    WITH RECURSIVE c AS (
        SELECT x.s -> 'child' AS child
        FROM jsonb_array_elements(p_steps) AS x (s)
        WHERE jsonb_typeof(x.s -> 'child') = 'object'
        UNION ALL
        SELECT x.s -> 'child'
        FROM c CROSS JOIN LATERAL jsonb_array_elements(c.child -> 'steps') AS x (s)
        WHERE jsonb_typeof(x.s -> 'child') = 'object'
    )
    SELECT DISTINCT coalesce(nullif(x.s ->> 'queue', ''), c.child ->> 'queue')
    FROM c CROSS JOIN LATERAL jsonb_array_elements(c.child -> 'steps') AS x (s)
    WHERE coalesce(nullif(x.s ->> 'queue', ''), c.child ->> 'queue') IS NOT NULL
$fn$;

-- Inserts the steps p_steps (admit's step objects, checked) into task p_task_id, named p_prefix || name, with their
-- edges; p_queue is the queue of steps that name none, p_child_of and p_context the child workflow they belong to
-- (NULL: the task's own steps). Parents of steps that may finish at once, fail their task or add steps when they
-- become ready (a condition, a wait, forEach, a child workflow) are marked: they complete under their task's lock
-- set (complete.sql). Returns the ids of the steps without dependencies.
CREATE OR REPLACE FUNCTION tasker._insert_steps(p_task_id bigint, p_steps jsonb, p_queue text, p_prefix text,
                                                p_child_of bigint, p_context jsonb) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids   bigint[];
    v_roots bigint[];
BEGIN
    WITH i AS (
        INSERT INTO tasker.steps (task_id, name, handler, queue, inputs, max_attempts, backoff_base_ms,
                                  backoff_max_ms, backoff_jitter, timeout_seconds, parent_count, remaining_parents,
                                  delay_ms, not_before, condition, wait_signal, wait_timeout_seconds, for_each, child,
                                  child_of, context)
        SELECT p_task_id, p_prefix || (x.s ->> 'name'), coalesce(x.s ->> 'handler', ''),
               coalesce(nullif(x.s ->> 'queue', ''), p_queue), x.s -> 'inputs',
               coalesce((x.s ->> 'max_attempts')::integer, 3), coalesce((x.s ->> 'backoff_base_ms')::integer, 1000),
               coalesce((x.s ->> 'backoff_max_ms')::integer, 300000), coalesce((x.s ->> 'backoff_jitter')::real, 0.2),
               coalesce((x.s ->> 'timeout_seconds')::integer, 0),
               jsonb_array_length(coalesce(x.s -> 'depends_on', '[]')),
               jsonb_array_length(coalesce(x.s -> 'depends_on', '[]')),
               round(coalesce((x.s ->> 'delay_seconds')::numeric, 0) * 1000)::bigint,
               (x.s ->> 'not_before')::timestamptz, (x.s ->> 'when')::jsonpath, nullif(x.s ->> 'wait_for', ''),
               coalesce((x.s ->> 'wait_timeout_seconds')::integer, 0), nullif(x.s ->> 'for_each', '')::jsonpath,
               nullif(x.s -> 'child', 'null'::jsonb), p_child_of, p_context
        FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS x (s, ord)
        ORDER BY x.ord
        RETURNING id, parent_count
    )
    SELECT array_agg(i.id ORDER BY i.id), coalesce(array_agg(i.id ORDER BY i.id) FILTER (WHERE i.parent_count = 0), '{}')
    INTO v_ids, v_roots
    FROM i;

    INSERT INTO tasker.step_edges (task_id, parent_id, child_id)
    SELECT p_task_id, p.id, c.id
    FROM jsonb_array_elements(p_steps) AS x (s)
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(x.s -> 'depends_on', '[]')) AS d (name)
    JOIN tasker.steps AS c ON c.task_id = p_task_id AND c.name = p_prefix || (x.s ->> 'name')
    JOIN tasker.steps AS p ON p.task_id = p_task_id AND p.name = p_prefix || d.name;

    IF jsonb_path_exists(p_steps, '$[*] ? ((exists(@.when) && @.when != null) || (exists(@.wait_for) && @.wait_for != null)
                                          || (exists(@.for_each) && @.for_each != null)
                                          || (exists(@.child) && @.child != null))') THEN
        UPDATE tasker.steps AS p SET conditional_children = true
        WHERE p.id IN (SELECT e.parent_id FROM tasker.steps AS c JOIN tasker.step_edges AS e ON e.child_id = c.id
                       WHERE c.id = ANY (v_ids)
                         AND (c.condition IS NOT NULL OR c.wait_signal IS NOT NULL OR c.for_each IS NOT NULL
                              OR c.child IS NOT NULL));
    END IF;
    RETURN v_roots;
END;
$fn$;

-- Why p_value, found by p_path for the child's parameter p_name, cannot be its value (NULL: it can), p_param being
-- the parameter's {type, enum} (NULL: the child declares none of that name, any value goes).
CREATE OR REPLACE FUNCTION tasker._argument_problem(p_name text, p_path text, p_value jsonb, p_param jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_type text := coalesce(p_param ->> 'type', '');
    v_json text := replace(v_type, 'integer', 'number'); -- the JSON type of the value
BEGIN
    IF p_value IS NULL THEN
        RETURN format('argument %s: %s found nothing', p_name, p_path);
    END IF;
    IF v_type <> '' AND jsonb_typeof(p_value) <> v_json THEN
        RETURN format('argument %s: %s gave %s, not %s', p_name, p_path, jsonb_typeof(p_value), v_type);
    END IF;
    IF v_type = 'integer' AND p_value::text::numeric <> trunc(p_value::text::numeric) THEN
        RETURN format('argument %s: %s gave %s, not an integer', p_name, p_path, p_value);
    END IF;
    IF jsonb_array_length(coalesce(p_param -> 'enum', '[]')) > 0 AND NOT (p_param -> 'enum') @> jsonb_build_array(p_value) THEN
        RETURN format('argument %s: %s gave %s, which is not one of %s', p_name, p_path, left(p_value::text, 200),
                      p_param -> 'enum');
    END IF;
    RETURN NULL;
END;
$fn$;

-- Expands the pending child workflow steps of p_step_ids (see above). Returns the child steps that became ready
-- (the children's first steps, for _enqueue to settle), and the tasks that failed (an argument that could not be
-- taken: the caller must not enqueue their other steps). The caller holds the tasks' lock sets.
CREATE OR REPLACE FUNCTION tasker._expand_children(p_step_ids bigint[], OUT ready bigint[], OUT stopped bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
    s         tasker.steps%ROWTYPE;
    v_doc     jsonb;
    v_params  jsonb;
    v_context jsonb;
    v_problem text;
    v_n       integer;
    v_leaves  integer;
    v_roots   bigint[];
    a         record;
BEGIN
    ready := '{}';
    stopped := '{}';
    FOR s IN SELECT * FROM tasker.steps AS x
             WHERE x.id = ANY (p_step_ids) AND x.state = 'pending' AND x.child IS NOT NULL AND x.for_each IS NULL
               AND x.child_size IS NULL
             ORDER BY x.id LOOP
        CONTINUE WHEN s.task_id = ANY (stopped);
        v_problem := NULL;
        v_context := nullif(s.child -> 'context', 'null'::jsonb);
        IF jsonb_typeof(s.child -> 'arguments_from') = 'object' AND s.child -> 'arguments_from' <> '{}'::jsonb THEN
            v_doc := tasker._condition_document(s.id);
            v_params := CASE WHEN jsonb_typeof(v_context -> 'params') = 'object' THEN v_context -> 'params' ELSE '{}' END;
            FOR a IN SELECT e.key, e.value #>> '{}' AS path,
                            jsonb_path_query_first(v_doc, (e.value #>> '{}')::jsonpath, silent => true) AS value
                     FROM jsonb_each(s.child -> 'arguments_from') AS e
                     ORDER BY e.key LOOP
                v_problem := tasker._argument_problem(a.key, a.path, a.value, s.child -> 'parameters' -> a.key);
                EXIT WHEN v_problem IS NOT NULL;
                v_params := v_params || jsonb_build_object(a.key, a.value);
            END LOOP;
            v_context := CASE WHEN jsonb_typeof(v_context) = 'object' THEN v_context ELSE '{}'::jsonb END
                         || jsonb_build_object('params', v_params);
        END IF;
        IF v_problem IS NOT NULL THEN
            IF tasker._fail_map(s, format('child workflow %s: %s', s.child ->> 'template', v_problem)) THEN
                stopped := stopped || s.task_id;
            END IF;
            CONTINUE;
        END IF;

        v_roots := tasker._insert_steps(s.task_id, s.child -> 'steps', coalesce(nullif(s.child ->> 'queue', ''), s.queue),
                                        s.name || '/', s.id, v_context);
        IF s.next_attempt_at > clock_timestamp() THEN -- a child run again after a failure waits for the backoff
            UPDATE tasker.steps AS x SET not_before = greatest(x.not_before, s.next_attempt_at)
            WHERE x.id = ANY (v_roots);
        END IF;
        ready := ready || v_roots;
        v_n := jsonb_array_length(s.child -> 'steps');
        -- The child's leaves are the step's parents from now on: it ends when they have.
        WITH l AS (
            INSERT INTO tasker.step_edges (task_id, parent_id, child_id)
            SELECT s.task_id, c.id, s.id
            FROM tasker.steps AS c
            WHERE c.child_of = s.id AND NOT EXISTS (SELECT 1 FROM tasker.step_edges AS e WHERE e.parent_id = c.id)
            RETURNING 1
        )
        SELECT count(*) INTO v_leaves FROM l;
        -- The message that has the step gathered goes to the queue of one of the child's last steps, which has
        -- workers (the step's own queue may have none: the child's steps may all run elsewhere).
        UPDATE tasker.steps AS x
        SET state = 'mapping', child_size = v_n, parent_count = x.parent_count + v_leaves, remaining_parents = v_leaves,
            queue = (SELECT c.queue FROM tasker.step_edges AS e JOIN tasker.steps AS c ON c.id = e.parent_id
                     WHERE e.child_id = s.id AND c.child_of = s.id
                     ORDER BY c.child IS NOT NULL, c.wait_signal IS NOT NULL, c.id LIMIT 1),
            attempts = x.attempts + 1, started_at = clock_timestamp(), finished_at = NULL, next_attempt_at = NULL,
            updated_at = clock_timestamp()
        WHERE x.id = s.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        VALUES (s.task_id, s.id, 'pending', 'mapping', s.attempts + 1,
                format('child workflow %s started (%s steps)', s.child ->> 'template', v_n),
                jsonb_build_object('template', s.child ->> 'template', 'steps', v_n, 'params', v_context -> 'params'));
        UPDATE tasker.tasks AS t
        SET step_count = t.step_count + v_n,
            -- A failed task whose step is retried by hand counts none until it resumes (_reopen_task recounts).
            unfinished_steps = CASE WHEN t.completed_at IS NULL THEN t.unfinished_steps + v_n ELSE 0 END,
            updated_at = clock_timestamp()
        WHERE t.id = s.task_id;
    END LOOP;
END;
$fn$;

-- The outputs p_outputs (name -> path) evaluated over p_doc ({"steps", "context"}): an output whose path finds
-- nothing is null.
CREATE OR REPLACE FUNCTION tasker._outputs(p_outputs jsonb, p_doc jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT coalesce(jsonb_object_agg(o.key, coalesce(jsonb_path_query_first(p_doc, (o.value #>> '{}')::jsonpath,
                                                                            silent => true), 'null'::jsonb)), '{}')
    FROM jsonb_each(p_outputs) AS o
$fn$;

-- The result of child workflow step p_step_id, whose child's steps have all finished (see above).
CREATE OR REPLACE FUNCTION tasker._child_result(p_step_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_outputs jsonb := (SELECT nullif(s.child -> 'outputs', 'null'::jsonb) FROM tasker.steps AS s WHERE s.id = p_step_id);
BEGIN
    IF v_outputs IS NULL THEN -- the leaves' results
        RETURN (SELECT coalesce(jsonb_object_agg(tasker._local_name(c.name), coalesce(c.result, 'null'::jsonb)), '{}')
                FROM tasker.step_edges AS e JOIN tasker.steps AS c ON c.id = e.parent_id
                WHERE e.child_id = p_step_id AND c.child_of = p_step_id);
    END IF;
    RETURN tasker._outputs(v_outputs, (
        SELECT jsonb_build_object('steps', coalesce(jsonb_object_agg(tasker._local_name(c.name),
                                                                     coalesce(c.result, 'null'::jsonb)), '{}'),
                                  'context', coalesce(min(c.context::text)::jsonb, 'null'::jsonb))
        FROM tasker.steps AS c WHERE c.child_of = p_step_id AND c.map_step_id IS NULL));
END;
$fn$;

-- The outputs of task p_task_id (tasks.outputs evaluated over its own steps' results and its context), NULL when it
-- declares none. Read with its status once it has succeeded.
CREATE OR REPLACE FUNCTION tasker._task_outputs(p_task_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
    SELECT tasker._outputs(t.outputs, jsonb_build_object(
               'steps', (SELECT coalesce(jsonb_object_agg(s.name, coalesce(s.result, 'null'::jsonb)), '{}')
                         FROM tasker.steps AS s
                         WHERE s.task_id = t.id AND s.child_of IS NULL AND s.map_step_id IS NULL),
               'context', coalesce(t.context, 'null'::jsonb)))
    FROM tasker.tasks AS t WHERE t.id = p_task_id AND t.outputs IS NOT NULL
$fn$;

-- Deletes the steps of the child workflow of step p_step_id at any depth — with their edges and messages (a worker
-- still running one finds its lease stale) — and recounts the task's steps. Their history stays (step_transitions
-- is append-only while the task exists): the step's own transition records how many went. Returns how many went.
-- The caller holds the task's lock set.
CREATE OR REPLACE FUNCTION tasker._delete_child_steps(p_step_id bigint) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_task bigint := (SELECT s.task_id FROM tasker.steps AS s WHERE s.id = p_step_id);
    v_ids  bigint[];
    r      record;
BEGIN
    WITH RECURSIVE d AS (
        SELECT c.id FROM tasker.steps AS c WHERE c.child_of = p_step_id
        UNION ALL
        SELECT c.id FROM tasker.steps AS c JOIN d ON c.child_of = d.id
    )
    SELECT array_agg(d.id) INTO v_ids FROM d;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    FOR r IN SELECT x.queue, array_agg(x.msg_id) AS ids FROM tasker.steps AS x
             WHERE x.id = ANY (v_ids) AND x.state IN ('enqueued', 'running', 'retrying') AND x.msg_id IS NOT NULL
             GROUP BY x.queue LOOP
        PERFORM tasker._delete_messages(r.queue, r.ids);
    END LOOP;
    DELETE FROM tasker.steps AS x WHERE x.id = ANY (v_ids); -- and their edges
    PERFORM tasker._recount_steps(v_task);
    RETURN cardinality(v_ids);
END;
$fn$;

-- Sets task p_task_id's step counts from its steps (after steps were deleted, or changed state outside the usual
-- paths).
CREATE OR REPLACE FUNCTION tasker._recount_steps(p_task_id bigint) RETURNS void
LANGUAGE sql AS $fn$
    UPDATE tasker.tasks AS t
    SET step_count = (SELECT count(*) FROM tasker.steps AS x WHERE x.task_id = t.id),
        -- A finished task counts none (it is recounted if it resumes: _reopen_task).
        unfinished_steps = CASE WHEN t.completed_at IS NULL THEN
                               (SELECT count(*) FROM tasker.steps AS x WHERE x.task_id = t.id
                                AND x.state IN ('pending', 'enqueued', 'running', 'retrying', 'waiting', 'mapping'))
                           ELSE 0 END,
        updated_at = clock_timestamp()
    WHERE t.id = p_task_id
$fn$;

-- Discards the child workflow of step p_step_id (_delete_child_steps) and makes the step pending again (its own
-- parents have all finished), recording p_reason, so that _enqueue expands it afresh. The caller holds the task's
-- lock set.
CREATE OR REPLACE FUNCTION tasker._discard_child(p_step_id bigint, p_reason text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s   tasker.steps%ROWTYPE;
    v_n integer;
BEGIN
    SELECT * INTO s FROM tasker.steps AS x WHERE x.id = p_step_id;
    v_n := tasker._delete_child_steps(p_step_id);
    UPDATE tasker.steps AS x
    SET state = 'pending', child_size = NULL, remaining_parents = 0,
        parent_count = (SELECT count(*) FROM tasker.step_edges AS e WHERE e.child_id = x.id),
        finished_at = NULL, next_attempt_at = NULL, updated_at = clock_timestamp()
    WHERE x.id = p_step_id;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
    VALUES (s.task_id, s.id, s.state, 'pending', s.attempts, p_reason, jsonb_build_object('discarded_steps', v_n));
    PERFORM tasker._recount_steps(s.task_id);
END;
$fn$;

-- Step p_step_id, of a child workflow, has failed for good (_stop_task is about to fail its task). Its child
-- workflow's step runs the child again when its retry policy allows (returns true: the task goes on); otherwise
-- that step fails too, and the same applies to the child it belongs to, up to the task's own steps (returns false:
-- the task fails). The caller holds the task's lock set.
CREATE OR REPLACE FUNCTION tasker._child_failed(p_step_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    c       tasker.steps%ROWTYPE;
    t       tasker.steps%ROWTYPE;
    v_error jsonb;
    v_at    timestamptz;
BEGIN
    SELECT * INTO c FROM tasker.steps AS x WHERE x.id = p_step_id;
    LOOP
        SELECT * INTO t FROM tasker.steps AS x WHERE x.id = c.child_of;
        IF NOT FOUND OR t.state <> 'mapping' THEN
            RETURN false;
        END IF;
        v_error := jsonb_build_object('message', format('child workflow %s failed: step %s: %s', t.child ->> 'template',
                                                        tasker._local_name(c.name),
                                                        coalesce(c.last_error ->> 'message', 'failed')),
                                      'step', c.name);
        IF t.attempts - t.retry_base < t.max_attempts THEN
            -- Again after the step's backoff: its child's first steps are visible only then (_expand_children).
            v_at := clock_timestamp() + round(tasker._backoff_ms(t, t.attempts - t.retry_base)) * interval '1 millisecond';
            UPDATE tasker.steps AS x SET last_error = v_error WHERE x.id = t.id;
            PERFORM tasker._discard_child(t.id, format('child workflow failed (step %s): run again at %s, attempt %s of %s',
                                                       tasker._local_name(c.name), v_at, t.attempts - t.retry_base + 1,
                                                       t.max_attempts));
            UPDATE tasker.steps AS x SET next_attempt_at = v_at WHERE x.id = t.id;
            PERFORM tasker._enqueue(ARRAY[t.id], 'child workflow run again');
            RETURN true;
        END IF;
        UPDATE tasker.steps AS x
        SET state = 'failed', last_error = v_error, finished_at = clock_timestamp(), next_attempt_at = NULL,
            updated_at = clock_timestamp()
        WHERE x.id = t.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        VALUES (t.task_id, t.id, 'mapping', 'failed', t.attempts, 'child workflow failed (attempts exhausted)',
                jsonb_build_object('error', v_error));
        SELECT * INTO c FROM tasker.steps AS x WHERE x.id = t.id;
    END LOOP;
END;
$fn$;

-- A failed step of a child workflow was retried, resolved or completed by hand: the child workflow steps it belongs
-- to, failed with it, wait for their children again (mapping), so that its task can resume. The caller holds the
-- task's lock set.
CREATE OR REPLACE FUNCTION tasker._child_resumed(p_step_id bigint, p_reason text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_id bigint := (SELECT s.child_of FROM tasker.steps AS s WHERE s.id = p_step_id);
    t    tasker.steps%ROWTYPE;
BEGIN
    WHILE v_id IS NOT NULL LOOP
        SELECT * INTO t FROM tasker.steps AS x WHERE x.id = v_id;
        EXIT WHEN t.state <> 'failed';
        UPDATE tasker.steps AS x
        SET state = 'mapping', finished_at = NULL, updated_at = clock_timestamp(),
            remaining_parents = (SELECT count(*) FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                                 WHERE e.child_id = x.id AND p.state NOT IN ('succeeded', 'resolved', 'omitted'))
        WHERE x.id = t.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
        VALUES (t.task_id, t.id, 'failed', 'mapping', t.attempts, p_reason);
        v_id := t.child_of;
    END LOOP;
END;
$fn$;
