-- Admits a task described by a JSON document (docs/worker-protocol.md), idempotently on external_key: the task,
-- its steps and edges, its queues, and a message for every step without dependencies, in the caller's
-- transaction. A second call with the same key returns the first task with created = false and changes nothing;
-- so does a call with the same namespace and idempotency_key (migration 0016), whatever its external key.
-- Names, references and cycles are checked here, so that no caller (in any language) can admit a task that never
-- finishes; the Go engine checks the same with internal/dag first, for its field-path messages.
CREATE OR REPLACE FUNCTION tasker.admit(spec jsonb) RETURNS TABLE (task_id bigint, created boolean)
LANGUAGE plpgsql
-- Every statement on a table here (and in the helpers it calls) is a key lookup. A session caches its PL/pgSQL
-- plans; cached while the tables were small, they would scan the tables sequentially forever after, and admission
-- would slow down as the tables grow (0.27 s for 200 ten-step tasks on an empty database, 1.3 s after 18,000
-- steps in the same session).
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    v_id      bigint;
    v_count   integer;
    v_problem text;
    v_queue   text;
    v_roots   bigint[];
BEGIN
    -- The document's shape first: every key known, every value of its type (a misspelt key would silently
    -- become a default: a dependency lost, a step run at once).
    v_problem := tasker._admit_document_problem(spec);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = '22023';
    END IF;
    v_problem := tasker._outputs_problem(spec -> 'outputs', 'spec.outputs');
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = '22023';
    END IF;
    IF jsonb_array_length(spec -> 'steps') = 0 THEN
        RAISE EXCEPTION 'spec.steps: at least one step is required' USING ERRCODE = '22023';
    END IF;
    IF coalesce(spec ->> 'external_key', '') = '' OR length(spec ->> 'external_key') > 255 THEN
        RAISE EXCEPTION 'spec.external_key: required, at most 255 characters' USING ERRCODE = '22023';
    END IF;
    IF length(spec ->> 'idempotency_key') NOT BETWEEN 1 AND 253 THEN
        RAISE EXCEPTION 'spec.idempotency_key: 1 to 253 characters, or absent' USING ERRCODE = '22023';
    END IF;
    IF coalesce(spec ->> 'queue', '') !~ '^([a-z0-9_]{1,40})?$' THEN
        RAISE EXCEPTION 'spec.queue: % is not a valid queue name', quote_nullable(spec ->> 'queue')
            USING ERRCODE = '22023';
    END IF;
    v_count := jsonb_array_length(spec -> 'steps');

    -- Names, queues and references, checked before anything is written (first problem in step order), then the
    -- child workflows' (children.sql).
    v_problem := coalesce(tasker._steps_problem(spec -> 'steps', spec ->> 'queue', 'spec.steps'),
                          tasker._children_problem(spec -> 'steps', 'spec.steps', 1));
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = '22023';
    END IF;
    v_problem := tasker._find_cycle(spec -> 'steps');
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'spec.steps: dependency cycle: %', v_problem USING ERRCODE = '22023';
    END IF;

    -- Flow control (concurrency.sql): a task of a concurrency group takes its group's lock before it gets its id,
    -- so that the group's admission order is the order of its task ids.
    IF spec -> 'concurrency' IS NOT NULL AND spec -> 'concurrency' <> 'null'::jsonb THEN
        PERFORM tasker._concurrency_lock_spec(spec);
    END IF;
    -- A task admitted under this external key, or (migration 0016) this namespace's idempotency key, is the one:
    -- the insert does nothing on either unique key, and the lookup finds which.
    INSERT INTO tasker.tasks AS t (external_key, namespace, name, queue, priority, context, retention, step_count,
                                   unfinished_steps, idempotency_key, trace_context, outputs)
    VALUES (spec ->> 'external_key', coalesce(spec ->> 'namespace', ''), coalesce(spec ->> 'name', ''),
            coalesce(spec ->> 'queue', ''), coalesce((spec ->> 'priority')::integer, 0), spec -> 'context',
            make_interval(secs => coalesce((spec ->> 'retention_seconds')::double precision, 604800)),
            v_count, v_count, spec ->> 'idempotency_key', nullif(spec -> 'trace_context', 'null'::jsonb),
            nullif(spec -> 'outputs', 'null'::jsonb))
    ON CONFLICT DO NOTHING
    RETURNING t.id INTO v_id;
    IF v_id IS NULL THEN
        SELECT t.id INTO v_id FROM tasker.tasks AS t WHERE t.external_key = spec ->> 'external_key';
        IF v_id IS NULL THEN
            SELECT t.id INTO v_id FROM tasker.tasks AS t
            WHERE t.namespace = coalesce(spec ->> 'namespace', '') AND t.idempotency_key = spec ->> 'idempotency_key';
        END IF;
        RETURN QUERY SELECT v_id, false;
        RETURN;
    END IF;

    v_roots := tasker._insert_steps(v_id, spec -> 'steps', spec ->> 'queue', '', NULL, NULL);

    -- The queues of the steps, and of the steps of their child workflows, which are expanded later in
    -- transactions that must not create queues (children.sql).
    FOR v_queue IN SELECT DISTINCT s.queue FROM tasker.steps AS s WHERE s.task_id = v_id
                   UNION SELECT q.queue FROM tasker._child_queues(spec -> 'steps') AS q (queue) ORDER BY 1 LOOP
        PERFORM tasker._ensure_queue(v_queue);
        IF coalesce((spec ->> 'priority')::integer, 0) <> 0 THEN
            PERFORM tasker._prioritize_queue(v_queue);
        END IF;
    END LOOP;

    IF cardinality(v_roots) = 0 THEN
        RAISE EXCEPTION 'spec.steps: no step without dependencies (the graph has a cycle)' USING ERRCODE = '22023';
    END IF;
    -- Flow control (concurrency.sql): a task of a concurrency group that gets no slot leaves its first steps
    -- pending (it waits for a slot) or is cancelled at once (CancelNewest).
    IF spec -> 'concurrency' IS NOT NULL AND spec -> 'concurrency' <> 'null'::jsonb
       AND NOT tasker._concurrency_admit(v_id, spec) THEN
        v_roots := '{}';
    END IF;
    IF cardinality(v_roots) > 0 THEN
        PERFORM tasker._enqueue(v_roots, 'admitted');
    END IF;
    PERFORM pg_notify('tasker_task', v_id::text);
    RETURN QUERY SELECT v_id, true;
END;
$fn$;

-- The first problem with the values of p_steps (an array of admit's step objects, its shape checked), as a message
-- naming the field under p_path (e.g. 'spec.steps'), or NULL: names, handlers, signals, queues (p_queue is the
-- default of steps that name none; NULL: none), retry policies, conditions, forEach paths and references.
CREATE OR REPLACE FUNCTION tasker._steps_problem(p_steps jsonb, p_queue text, p_path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_problem text;
BEGIN
    WITH s AS (
        SELECT x.ord - 1 AS i, x.s ->> 'name' AS name, x.s ->> 'handler' AS handler,
               coalesce(nullif(x.s ->> 'queue', ''), p_queue) AS queue, x.s -> 'depends_on' AS deps,
               (x.s ->> 'max_attempts')::integer AS max_attempts, (x.s ->> 'backoff_base_ms')::bigint AS base_ms,
               (x.s ->> 'backoff_max_ms')::bigint AS max_ms, (x.s ->> 'backoff_jitter')::double precision AS jitter,
               (x.s ->> 'timeout_seconds')::bigint AS timeout, x.s ->> 'when' AS cond,
               nullif(x.s ->> 'wait_for', '') AS wait_for, (x.s ->> 'wait_timeout_seconds')::bigint AS wait_timeout,
               nullif(x.s ->> 'for_each', '') AS for_each, nullif(x.s -> 'child', 'null'::jsonb) AS child
        FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS x (s, ord)
    )
    SELECT p.msg INTO v_problem FROM (
        SELECT s.i, 1 AS k, format('%s[%s].name: %s is not a valid step name', p_path, s.i,
                                   quote_nullable(s.name)) AS msg
        FROM s WHERE s.name IS NULL OR s.name !~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'
        UNION ALL
        SELECT s.i, 2, format('%s[%s].name: duplicate step name %s', p_path, s.i, quote_nullable(s.name))
        FROM s WHERE (SELECT count(*) FROM s AS s2 WHERE s2.name = s.name) > 1
        UNION ALL
        SELECT s.i, 3, format('%s[%s].handler: required (or wait_for, for a step that waits for a signal, or child, '
                              'for a step that runs a child workflow)', p_path, s.i)
        FROM s WHERE (coalesce(s.handler, '') = '' AND s.wait_for IS NULL AND s.child IS NULL) OR length(s.handler) > 253
        UNION ALL
        SELECT s.i, 3, format('%s[%s].child: a step runs a child workflow, runs a handler or waits for a signal: one '
                              'of the three', p_path, s.i)
        FROM s WHERE s.child IS NOT NULL AND (coalesce(s.handler, '') <> '' OR s.wait_for IS NOT NULL)
        UNION ALL
        SELECT s.i, 3, format('%s[%s].wait_for: a step waits for a signal or runs a handler, not both', p_path, s.i)
        FROM s WHERE coalesce(s.handler, '') <> '' AND s.wait_for IS NOT NULL
        UNION ALL
        SELECT s.i, 3, format('%s[%s].wait_for: %s is not a valid signal name (lower-case letters, digits, '
                              '- _ ., at most 63)', p_path, s.i, quote_nullable(s.wait_for))
        FROM s WHERE s.wait_for !~ '^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$'
        UNION ALL
        SELECT s.i, 3, format('%s[%s].wait_timeout_seconds: must be 0 (none) or more, and needs wait_for', p_path, s.i)
        FROM s WHERE coalesce(s.wait_timeout, 0) < 0 OR (coalesce(s.wait_timeout, 0) > 0 AND s.wait_for IS NULL)
        UNION ALL
        SELECT s.i, 4, format('%s[%s].queue: the step names no queue and the task has none (spec.queue)', p_path, s.i)
        FROM s WHERE s.queue IS NULL
        UNION ALL
        SELECT s.i, 4, format('%s[%s].queue: %s is not a valid queue name', p_path, s.i, quote_nullable(s.queue))
        FROM s WHERE s.queue !~ '^[a-z0-9_]{1,40}$'
        UNION ALL
        SELECT s.i, 5, format('%s[%s]: max_attempts must be 1 to 1000, 0 <= backoff_base_ms <= '
                              'backoff_max_ms <= 86400000, backoff_jitter 0 to 1, timeout_seconds >= 0', p_path, s.i)
        FROM s WHERE NOT (coalesce(s.max_attempts, 3) BETWEEN 1 AND 1000
                          AND coalesce(s.base_ms, 1000) >= 0
                          AND coalesce(s.max_ms, 300000) BETWEEN coalesce(s.base_ms, 1000) AND 86400000
                          AND coalesce(s.jitter, 0.2) BETWEEN 0 AND 1 AND coalesce(s.timeout, 0) >= 0)
        UNION ALL
        SELECT s.i, 7, format('%s[%s].when: %s', p_path, s.i, tasker._when_problem(s.cond))
        FROM s WHERE s.cond IS NOT NULL AND tasker._when_problem(s.cond) IS NOT NULL
        UNION ALL
        SELECT s.i, 7, format('%s[%s].for_each: %s', p_path, s.i, tasker._for_each_problem(s.for_each))
        FROM s WHERE s.for_each IS NOT NULL AND tasker._for_each_problem(s.for_each) IS NOT NULL
        UNION ALL
        SELECT s.i, 7, format('%s[%s].for_each: a step that waits for a signal (wait_for) cannot map', p_path, s.i)
        FROM s WHERE s.for_each IS NOT NULL AND s.wait_for IS NOT NULL
        UNION ALL
        SELECT s.i, 6, format('%s[%s].depends_on: unknown step %s', p_path, s.i, quote_nullable(d.name))
        FROM s CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(s.deps, '[]')) AS d (name)
        WHERE NOT EXISTS (SELECT 1 FROM s AS s2 WHERE s2.name = d.name) OR d.name = s.name
    ) AS p ORDER BY p.i, p.k LIMIT 1;
    RETURN v_problem;
END;
$fn$;

-- Returns a dependency cycle of the steps (a JSON array of admit's step objects, names unique and every
-- depends_on naming a step) as 'a -> b -> a', each arrow pointing from a step to a step it depends on, or NULL
-- when the graph is acyclic. Kahn's algorithm over arrays indexed by step position: O(steps + edges).
CREATE OR REPLACE FUNCTION tasker._find_cycle(p_steps jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_names    text[];
    v_parents  integer[];  -- edge i: v_parents[i] <- v_children[i] (the child depends on the parent)
    v_children integer[];
    v_first    integer[];  -- edges of parent p: v_out[v_first[p] .. v_first[p + 1] - 1] (children, CSR)
    v_out      integer[];
    v_indeg    integer[];
    v_queue    integer[];
    v_n        integer;
    v_head     integer := 1;
    v_done     integer := 0;
    v_p        integer;
    v_c        integer;
    v_k        integer;
    v_path     integer[];
    v_seen     boolean[];
BEGIN
    SELECT array_agg(x.s ->> 'name' ORDER BY x.ord) INTO v_names
    FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS x (s, ord);
    v_n := cardinality(v_names);
    SELECT array_agg(array_position(v_names, d.name) ORDER BY array_position(v_names, d.name), x.ord),
           array_agg(x.ord::integer ORDER BY array_position(v_names, d.name), x.ord)
    INTO v_parents, v_children
    FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS x (s, ord)
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(x.s -> 'depends_on', '[]')) AS d (name);
    IF v_parents IS NULL THEN
        RETURN NULL;
    END IF;
    v_out := v_children;
    v_first := array_fill(0, ARRAY[v_n + 1]);
    v_indeg := array_fill(0, ARRAY[v_n]);
    FOR v_k IN 1 .. cardinality(v_parents) LOOP
        v_first[v_parents[v_k]] := v_first[v_parents[v_k]] + 1; -- out-degree for now
        v_indeg[v_children[v_k]] := v_indeg[v_children[v_k]] + 1;
    END LOOP;
    v_k := 1;
    FOR v_p IN 1 .. v_n + 1 LOOP -- out-degrees -> start offsets
        v_c := v_first[v_p];
        v_first[v_p] := v_k;
        v_k := v_k + coalesce(v_c, 0);
    END LOOP;
    v_queue := ARRAY(SELECT i FROM generate_series(1, v_n) AS i WHERE v_indeg[i] = 0);
    WHILE v_head <= cardinality(v_queue) LOOP
        v_p := v_queue[v_head];
        v_head := v_head + 1;
        v_done := v_done + 1;
        FOR v_k IN v_first[v_p] .. v_first[v_p + 1] - 1 LOOP
            v_c := v_out[v_k];
            v_indeg[v_c] := v_indeg[v_c] - 1;
            IF v_indeg[v_c] = 0 THEN
                v_queue := v_queue || v_c;
            END IF;
        END LOOP;
    END LOOP;
    IF v_done = v_n THEN
        RETURN NULL;
    END IF;
    -- Every step left has a parent left: walk to parents from the first one left until a step repeats.
    v_seen := array_fill(false, ARRAY[v_n]);
    v_c := (SELECT min(i) FROM generate_series(1, v_n) AS i WHERE v_indeg[i] > 0);
    WHILE NOT v_seen[v_c] LOOP
        v_seen[v_c] := true;
        v_path := v_path || v_c;
        v_c := (SELECT e.p FROM unnest(v_parents, v_children) AS e (p, c)
                WHERE e.c = v_c AND v_indeg[e.p] > 0 ORDER BY e.p LIMIT 1);
    END LOOP;
    v_path := v_path[array_position(v_path, v_c):];
    IF cardinality(v_path) > 10 THEN -- keep the message short: the first ten steps and the length
        RETURN (SELECT string_agg(v_names[s.i], ' -> ' ORDER BY s.ord) FROM unnest(v_path[:10]) WITH ORDINALITY AS s (i, ord))
               || format(' -> ... (a cycle of %s steps)', cardinality(v_path));
    END IF;
    RETURN (SELECT string_agg(v_names[s.i], ' -> ' ORDER BY s.ord)
            FROM unnest(v_path || v_c) WITH ORDINALITY AS s (i, ord));
END;
$fn$;

-- The first problem with the shape of an admission document (NULL: none), as a message naming the field: not an
-- object, an unknown key (with the key meant, when it looks like a known one spelt otherwise: dependsOn,
-- max_attempt, timeout), or a value of the wrong JSON type or out of its column's range. The values' meaning
-- (names, references, ranges of the retry policy, cycles) is admit's to check. One statement for the task and
-- its steps (admission's cost grows with them): a helper runs only to word a problem found.
CREATE OR REPLACE FUNCTION tasker._admit_document_problem(spec jsonb, p_path text DEFAULT 'spec') RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    -- The keys of the task and of a step, and their kinds as _json_type_problem takes them ('any': free JSON).
    c_task_keys  CONSTANT text[] := ARRAY['external_key', 'namespace', 'name', 'queue', 'priority', 'context',
                                          'retention_seconds', 'steps', 'idempotency_key', 'concurrency',
                                          'trace_context', 'outputs'];
    c_task_kinds CONSTANT text[] := ARRAY['string', 'string', 'string', 'string', 'integer', 'any',
                                          'seconds', 'array', 'string', 'any', 'trace', 'any'];
    c_step_keys  CONSTANT text[] := ARRAY['name', 'handler', 'queue', 'depends_on', 'inputs', 'max_attempts',
                                          'backoff_base_ms', 'backoff_max_ms', 'backoff_jitter', 'timeout_seconds',
                                          'delay_seconds', 'not_before', 'when', 'wait_for', 'wait_timeout_seconds',
                                          'for_each', 'child'];
    c_step_kinds CONSTANT text[] := ARRAY['string', 'string', 'string', 'strings', 'any', 'integer',
                                          'integer', 'integer', 'number', 'integer', 'seconds', 'timestamp', 'string',
                                          'string', 'integer', 'string', 'any'];
    v_problem text;
BEGIN
    IF jsonb_typeof(spec) IS DISTINCT FROM 'object' THEN
        RETURN format('%s: must be a JSON object, not %s', p_path, coalesce(jsonb_typeof(spec), 'NULL'));
    END IF;
    WITH objs AS (
        SELECT -1::bigint AS i, p_path AS path, spec AS o, c_task_keys AS keys, c_task_kinds AS kinds
        UNION ALL
        SELECT x.ord - 1, format('%s.steps[%s]', p_path, x.ord - 1), x.s, c_step_keys, c_step_kinds
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(spec -> 'steps') = 'array' THEN spec -> 'steps' END)
             WITH ORDINALITY AS x (s, ord)
    )
    SELECT p.msg INTO v_problem FROM (
        SELECT ob.i, 0 AS k, ''::text AS key, format('%s: must be a JSON object, not %s', ob.path, jsonb_typeof(ob.o)) AS msg
        FROM objs AS ob WHERE jsonb_typeof(ob.o) <> 'object'
        UNION ALL
        SELECT ob.i, 1, e.key,
               CASE WHEN t.kind IS NULL THEN tasker._unknown_key(ob.o, ob.keys, ob.path)
                    ELSE tasker._json_type_problem(ob.o, ob.path, e.key, t.kind) END
        FROM objs AS ob
        CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(ob.o) = 'object' THEN ob.o END) AS e (key, value)
        LEFT JOIN LATERAL unnest(ob.keys, ob.kinds) AS t (key, kind) ON t.key = e.key
        WHERE t.kind IS NULL
           OR (t.kind <> 'any' AND jsonb_typeof(e.value) <> 'null' AND CASE
                   WHEN t.kind = 'string' THEN jsonb_typeof(e.value) <> 'string'
                   WHEN t.kind = 'array' THEN jsonb_typeof(e.value) <> 'array'
                   -- trace_context: an object of strings, small (it goes out with every claim of the task's steps).
                   WHEN t.kind = 'trace' THEN jsonb_typeof(e.value) <> 'object' OR length(e.value::text) > 2048
                                              OR jsonb_path_exists(e.value, '$.* ? (@.type() != "string")')
                   WHEN t.kind = 'timestamp' THEN NOT tasker._is_timestamp(e.value)
                   WHEN t.kind = 'strings' THEN jsonb_typeof(e.value) <> 'array'
                                                OR jsonb_path_exists(e.value, '$[*] ? (@.type() != "string")')
                   WHEN jsonb_typeof(e.value) <> 'number' THEN true
                   WHEN t.kind = 'integer' THEN e.value::numeric <> trunc(e.value::numeric)
                                                OR abs(e.value::numeric) > 2147483647
                   WHEN t.kind = 'seconds' THEN e.value::numeric NOT BETWEEN 0 AND 315360000
                   ELSE false
               END)
    ) AS p ORDER BY p.i, p.k, p.key LIMIT 1;
    IF v_problem IS NULL AND jsonb_typeof(spec -> 'steps') IS DISTINCT FROM 'array' THEN
        v_problem := p_path || '.steps: required, an array of steps';
    END IF;
    RETURN v_problem;
END;
$fn$;

-- 'path.key: unknown field' for the first key of p_obj (in key order) that is not one of p_known, with the known
-- key it most likely meant: the same in snake_case (dependsOn), or a known key that extends it (max_attempt,
-- timeout). NULL when every key is known.
CREATE OR REPLACE FUNCTION tasker._unknown_key(p_obj jsonb, p_known text[], p_path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_key   text;
    v_snake text;
    v_meant text;
BEGIN
    SELECT k INTO v_key FROM jsonb_object_keys(p_obj) AS k WHERE NOT k = ANY (p_known) ORDER BY k LIMIT 1;
    IF v_key IS NULL THEN
        RETURN NULL;
    END IF;
    v_snake := lower(regexp_replace(v_key, '([a-z0-9])([A-Z])', '\1_\2', 'g'));
    SELECT k INTO v_meant FROM unnest(p_known) AS k
    WHERE k = v_snake OR (length(v_snake) >= 4 AND k LIKE v_snake || '%')
    ORDER BY k <> v_snake, length(k) LIMIT 1;
    RETURN format('%s.%s: unknown field%s', p_path, v_key,
                  CASE WHEN v_meant IS NULL THEN format(' (the fields are %s)', array_to_string(p_known, ', '))
                       ELSE format(' (did you mean %s?)', v_meant) END);
END;
$fn$;

-- 'path.key: must be ...' when p_obj's key is present, not null, and not of p_type: 'string', 'number',
-- 'integer' (a whole number within PostgreSQL's integer), 'seconds' (a number of seconds, 0 to 10 years),
-- 'array', 'strings' (an array of strings). NULL when it is.
CREATE OR REPLACE FUNCTION tasker._json_type_problem(p_obj jsonb, p_path text, p_key text, p_type text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v   jsonb := p_obj -> p_key;
    v_t text := jsonb_typeof(p_obj -> p_key);
    v_n numeric;
BEGIN
    IF v IS NULL OR v_t = 'null' THEN
        RETURN NULL;
    END IF;
    IF p_type = 'string' AND v_t <> 'string' THEN
        RETURN format('%s.%s: must be a string, not %s', p_path, p_key, v_t);
    ELSIF p_type = 'array' AND v_t <> 'array' THEN
        RETURN format('%s.%s: must be an array, not %s', p_path, p_key, v_t);
    ELSIF p_type = 'strings' AND (v_t <> 'array' OR EXISTS (SELECT FROM jsonb_array_elements(v) AS e
                                                            WHERE jsonb_typeof(e) <> 'string')) THEN
        RETURN format('%s.%s: must be an array of strings', p_path, p_key);
    ELSIF p_type = 'trace' AND (v_t <> 'object' OR length(v::text) > 2048
                                OR jsonb_path_exists(v, '$.* ? (@.type() != "string")')) THEN
        RETURN format('%s.%s: must be an object of strings (W3C traceparent, tracestate) of at most 2048 bytes',
                      p_path, p_key);
    ELSIF p_type = 'timestamp' AND NOT tasker._is_timestamp(v) THEN
        RETURN format('%s.%s: must be an RFC 3339 time with its offset (2026-12-06T09:00:00Z), not %s', p_path, p_key, v);
    ELSIF p_type IN ('number', 'integer', 'seconds') THEN
        IF v_t <> 'number' THEN
            RETURN format('%s.%s: must be a number, not %s', p_path, p_key, v_t);
        END IF;
        v_n := v::numeric;
        IF p_type = 'integer' AND (v_n <> trunc(v_n) OR v_n NOT BETWEEN -2147483648 AND 2147483647) THEN
            RETURN format('%s.%s: must be a whole number between -2147483648 and 2147483647, not %s', p_path, p_key, v);
        END IF;
        IF p_type = 'seconds' AND v_n NOT BETWEEN 0 AND 315360000 THEN
            RETURN format('%s.%s: must be 0 to 315360000 seconds (10 years), not %s', p_path, p_key, v);
        END IF;
    END IF;
    RETURN NULL;
END;
$fn$;

-- True when v is a JSON string holding an RFC 3339 time with its offset (as Kubernetes writes times): the offset
-- makes it one instant whatever the session's time zone.
CREATE OR REPLACE FUNCTION tasker._is_timestamp(v jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    IF jsonb_typeof(v) IS DISTINCT FROM 'string'
       OR (v #>> '{}') !~ '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$' THEN
        RETURN false;
    END IF;
    PERFORM (v #>> '{}')::timestamptz;
    RETURN true;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    RETURN false;
END;
$fn$;
