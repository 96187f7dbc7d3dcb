-- Admits a task described by a JSON document (docs/worker-protocol.md), idempotently on external_key: the task,
-- its steps and edges, its queues, and a message for every step without dependencies, in the caller's
-- transaction. A second call with the same key returns the first task with created = false and changes nothing.
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
    IF jsonb_typeof(spec -> 'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(spec -> 'steps') = 0 THEN
        RAISE EXCEPTION 'spec.steps: at least one step is required' USING ERRCODE = '22023';
    END IF;
    IF coalesce(spec ->> 'external_key', '') = '' OR length(spec ->> 'external_key') > 255 THEN
        RAISE EXCEPTION 'spec.external_key: required, at most 255 characters' USING ERRCODE = '22023';
    END IF;
    IF coalesce(spec ->> 'queue', '') !~ '^([a-z0-9_]{1,40})?$' THEN
        RAISE EXCEPTION 'spec.queue: % is not a valid queue name', quote_nullable(spec ->> 'queue')
            USING ERRCODE = '22023';
    END IF;
    v_count := jsonb_array_length(spec -> 'steps');

    -- Names, queues and references, checked before anything is written (first problem in step order).
    WITH s AS (
        SELECT x.ord - 1 AS i, x.s ->> 'name' AS name, x.s ->> 'handler' AS handler,
               coalesce(nullif(x.s ->> 'queue', ''), spec ->> 'queue') AS queue, x.s -> 'depends_on' AS deps,
               (x.s ->> 'max_attempts')::integer AS max_attempts, (x.s ->> 'backoff_base_ms')::bigint AS base_ms,
               (x.s ->> 'backoff_max_ms')::bigint AS max_ms, (x.s ->> 'backoff_jitter')::double precision AS jitter,
               (x.s ->> 'timeout_seconds')::bigint AS timeout
        FROM jsonb_array_elements(spec -> 'steps') WITH ORDINALITY AS x (s, ord)
    )
    SELECT p.msg INTO v_problem FROM (
        SELECT s.i, 1 AS k, format('spec.steps[%s].name: %s is not a valid step name', s.i,
                                   quote_nullable(s.name)) AS msg
        FROM s WHERE s.name IS NULL OR s.name !~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'
        UNION ALL
        SELECT s.i, 2, format('spec.steps[%s].name: duplicate step name %s', s.i, quote_nullable(s.name))
        FROM s WHERE (SELECT count(*) FROM s AS s2 WHERE s2.name = s.name) > 1
        UNION ALL
        SELECT s.i, 3, format('spec.steps[%s].handler: required', s.i)
        FROM s WHERE coalesce(s.handler, '') = '' OR length(s.handler) > 253
        UNION ALL
        SELECT s.i, 4, format('spec.steps[%s].queue: %s is not a valid queue name', s.i, quote_nullable(s.queue))
        FROM s WHERE s.queue IS NULL OR s.queue !~ '^[a-z0-9_]{1,40}$'
        UNION ALL
        SELECT s.i, 5, format('spec.steps[%s].retry: maxAttempts must be 1 to 1000, backoff 0 <= base <= max '
                              '<= 86400000 ms, jitter 0 to 1; timeoutSeconds >= 0', s.i)
        FROM s WHERE NOT (coalesce(s.max_attempts, 3) BETWEEN 1 AND 1000
                          AND coalesce(s.base_ms, 1000) >= 0
                          AND coalesce(s.max_ms, 300000) BETWEEN coalesce(s.base_ms, 1000) AND 86400000
                          AND coalesce(s.jitter, 0.2) BETWEEN 0 AND 1 AND coalesce(s.timeout, 0) >= 0)
        UNION ALL
        SELECT s.i, 6, format('spec.steps[%s].dependsOn: unknown step %s', s.i, quote_nullable(d.name))
        FROM s CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(s.deps, '[]')) AS d (name)
        WHERE NOT EXISTS (SELECT 1 FROM s AS s2 WHERE s2.name = d.name) OR d.name = s.name
    ) AS p ORDER BY p.i, p.k LIMIT 1;
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = '22023';
    END IF;
    v_problem := tasker._find_cycle(spec -> 'steps');
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'spec.steps: dependency cycle: %', v_problem USING ERRCODE = '22023';
    END IF;

    INSERT INTO tasker.tasks AS t (external_key, namespace, name, queue, priority, context, retention, step_count,
                                   unfinished_steps)
    VALUES (spec ->> 'external_key', coalesce(spec ->> 'namespace', ''), coalesce(spec ->> 'name', ''),
            coalesce(spec ->> 'queue', ''), coalesce((spec ->> 'priority')::integer, 0), spec -> 'context',
            make_interval(secs => coalesce((spec ->> 'retention_seconds')::double precision, 604800)),
            v_count, v_count)
    ON CONFLICT (external_key) DO NOTHING
    RETURNING t.id INTO v_id;
    IF v_id IS NULL THEN
        SELECT t.id INTO v_id FROM tasker.tasks AS t WHERE t.external_key = spec ->> 'external_key';
        RETURN QUERY SELECT v_id, false;
        RETURN;
    END IF;

    INSERT INTO tasker.steps (task_id, name, handler, queue, inputs, max_attempts, backoff_base_ms, backoff_max_ms,
                              backoff_jitter, timeout_seconds, parent_count, remaining_parents)
    SELECT v_id, x.s ->> 'name', x.s ->> 'handler', coalesce(nullif(x.s ->> 'queue', ''), spec ->> 'queue'),
           x.s -> 'inputs', coalesce((x.s ->> 'max_attempts')::integer, 3),
           coalesce((x.s ->> 'backoff_base_ms')::integer, 1000), coalesce((x.s ->> 'backoff_max_ms')::integer, 300000),
           coalesce((x.s ->> 'backoff_jitter')::real, 0.2), coalesce((x.s ->> 'timeout_seconds')::integer, 0),
           jsonb_array_length(coalesce(x.s -> 'depends_on', '[]')),
           jsonb_array_length(coalesce(x.s -> 'depends_on', '[]'))
    FROM jsonb_array_elements(spec -> 'steps') WITH ORDINALITY AS x (s, ord)
    ORDER BY x.ord;

    INSERT INTO tasker.step_edges (task_id, parent_id, child_id)
    SELECT v_id, p.id, c.id
    FROM jsonb_array_elements(spec -> 'steps') AS x (s)
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(x.s -> 'depends_on', '[]')) AS d (name)
    JOIN tasker.steps AS c ON c.task_id = v_id AND c.name = x.s ->> 'name'
    JOIN tasker.steps AS p ON p.task_id = v_id AND p.name = d.name;

    FOR v_queue IN SELECT DISTINCT s.queue FROM tasker.steps AS s WHERE s.task_id = v_id ORDER BY 1 LOOP
        PERFORM tasker._ensure_queue(v_queue);
        IF coalesce((spec ->> 'priority')::integer, 0) <> 0 THEN
            PERFORM tasker._prioritize_queue(v_queue);
        END IF;
    END LOOP;

    SELECT array_agg(s.id) INTO v_roots FROM tasker.steps AS s WHERE s.task_id = v_id AND s.parent_count = 0;
    IF v_roots IS NULL THEN
        RAISE EXCEPTION 'spec.steps: no step without dependencies (the graph has a cycle)' USING ERRCODE = '22023';
    END IF;
    PERFORM tasker._enqueue(v_roots, 'admitted');
    PERFORM pg_notify('tasker_task', v_id::text);
    RETURN QUERY SELECT v_id, true;
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
