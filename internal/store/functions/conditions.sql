-- Conditions (`when`, migration 0013): a SQL/JSON path predicate, evaluated by PostgreSQL (jsonb_path_match) over
-- the document {"context": <the task's context>, "deps": {<dependency>: <its result>, ...}} in the transaction that
-- would enqueue the step. True: the step is enqueued. False, or unknown (a comparison of different types, a path
-- that finds nothing): the step is omitted (_omit_steps). A predicate is checked when the task is admitted.

-- Why p_when cannot be a step's condition (NULL: it can): not a SQL/JSON path, or not a predicate (a comparison,
-- exists(...), like_regex, starts with, is unknown, && || !), which jsonb_path_match needs.
CREATE OR REPLACE FUNCTION tasker._when_problem(p_when text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_kind text;
BEGIN
    v_kind := tasker._path_problem(p_when); -- NULL for NULL
    IF p_when IS NULL OR v_kind IS NOT NULL THEN
        RETURN v_kind;
    END IF;
    -- A predicate gives true, false or null (unknown) on any document; a plain path gives the items it finds, none
    -- on this empty one.
    v_kind := jsonb_typeof(jsonb_path_query_first('{"context": {}, "deps": {}}', p_when::jsonpath, silent => true));
    IF v_kind IS NULL OR v_kind NOT IN ('boolean', 'null') THEN
        RETURN 'must be a predicate that gives true or false, e.g. $.deps.review.approved == true '
               'or exists($.context.coupon)';
    END IF;
    RETURN NULL;
END;
$fn$;

-- Why p_path cannot be a SQL/JSON path expression (NULL: it can, or it is NULL): too long, or not one. Shared by
-- conditions, forEach paths, concurrency keys, child workflows' arguments and outputs.
CREATE OR REPLACE FUNCTION tasker._path_problem(p_path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_path jsonpath;
BEGIN
    IF p_path IS NULL THEN
        RETURN NULL;
    END IF;
    IF length(p_path) > 1024 THEN
        RETURN 'must be at most 1024 characters';
    END IF;
    BEGIN
        v_path := p_path::jsonpath;
    EXCEPTION WHEN syntax_error OR invalid_parameter_value OR invalid_text_representation THEN
        RETURN format('not a SQL/JSON path expression (%s)', SQLERRM);
    END;
    RETURN NULL;
END;
$fn$;

-- The document a step's condition (and forEach, and a child workflow's arguments) is evaluated over: the context
-- its handler gets (its task's, or its child workflow's: children.sql), its dependencies' results by name (within
-- its child workflow), and, for a map instance, its element.
CREATE OR REPLACE FUNCTION tasker._condition_document(p_step_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
    SELECT jsonb_build_object(
        'context', coalesce(s.context, t.context, 'null'::jsonb),
        'deps', coalesce((SELECT jsonb_object_agg(CASE WHEN s.child_of IS NULL THEN p.name ELSE tasker._local_name(p.name) END,
                                                  coalesce(p.result, 'null'::jsonb))
                          FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                          WHERE e.child_id = s.id), '{}'::jsonb))
        || CASE WHEN s.item_index IS NOT NULL THEN jsonb_build_object('item', s.item) ELSE '{}'::jsonb END
    FROM tasker.steps AS s JOIN tasker.tasks AS t ON t.id = s.task_id
    WHERE s.id = p_step_id
$fn$;

-- Omits pending steps whose condition is false: they finish without running (state omitted, no result, the
-- condition in the transition's metadata), their tasks count them as finished, and their children count them as
-- done. Returns the children that became ready, for _enqueue to settle (enqueue, or omit in turn). The caller
-- holds the tasks' locks (_lock_tasks: every step and the task), as every caller of _enqueue does when a step may
-- have a condition.
CREATE OR REPLACE FUNCTION tasker._omit_steps(p_step_ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids   bigint[];
    v_tasks bigint[];
BEGIN
    WITH u AS (
        UPDATE tasker.steps AS s
        SET state = 'omitted', finished_at = clock_timestamp(), next_attempt_at = NULL, updated_at = clock_timestamp()
        WHERE s.id = ANY (p_step_ids) AND s.state = 'pending'
        RETURNING s.id, s.task_id, s.attempts, s.condition
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
        SELECT u.task_id, u.id, 'pending', 'omitted', u.attempts, 'condition false',
               jsonb_build_object('when', u.condition::text)
        FROM u
    )
    SELECT array_agg(u.id), array_agg(u.task_id) INTO v_ids, v_tasks FROM u;
    IF v_ids IS NULL THEN
        RETURN '{}';
    END IF;
    PERFORM tasker._count_finished(v_tasks);
    RETURN tasker._count_off_children(v_ids);
END;
$fn$;
