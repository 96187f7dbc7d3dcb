-- Limits on results, checked where a success is reported (complete.sql), so that they hold for workers in any
-- language. A step's result is handed to each of its children's claims with their other parents' results; were
-- those unbounded, one child's claim could fail (jsonb holds at most 255 MiB) and so every claim of its queue, as
-- the child's message is read again and again.

-- The largest result, in bytes of JSON as PostgreSQL prints it (jsonb::text): 1 MiB, as the Go SDK's
-- engine.MaxResultSize.
CREATE OR REPLACE FUNCTION tasker.max_result_bytes() RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$ SELECT 1048576 $fn$;

-- The most a child may receive from its parents' large results (64 KiB or more, whose sizes completions record in
-- steps.result_bytes): 64 MiB. Smaller results are not counted: a step has at most 999 parents, so they add less
-- than 64 MiB, and a child receives less than 128 MiB in all.
CREATE OR REPLACE FUNCTION tasker.max_dependency_results_bytes() RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$
    SELECT 67108864
$fn$;

-- Whether a result is large: 64 KiB or more as stored (pg_column_size, no conversion), the results whose size
-- completions record (steps.result_bytes) and check against the limits. A one-expression SQL function: inlined.
CREATE OR REPLACE FUNCTION tasker._is_large_result(p_result jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$
    SELECT pg_column_size(p_result) >= 65536
$fn$;

-- What a completion records in steps.result_bytes: a large result's size in bytes of JSON text, else NULL.
CREATE OR REPLACE FUNCTION tasker._large_result_bytes(p_result jsonb) RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN tasker._is_large_result(p_result) THEN octet_length(p_result::text) END
$fn$;

-- Why the result reported for the step of p_lease cannot be recorded (NULL: it can): larger than
-- max_result_bytes(), or it would bring the results one of the step's children receives over
-- max_dependency_results_bytes(). For results of 64 KiB or more (by pg_column_size); smaller ones pass unread.
CREATE OR REPLACE FUNCTION tasker._result_problem(p_lease uuid, p_result jsonb) RETURNS text
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_step  bigint := tasker.lease_step_id(p_lease);
    v_size  bigint;
    v_child text;
    v_other bigint;
BEGIN
    IF p_result IS NULL OR NOT tasker._is_large_result(p_result) THEN
        RETURN NULL;
    END IF;
    v_size := octet_length(p_result::text);
    IF v_size > tasker.max_result_bytes() THEN
        RETURN format('the result is %s bytes of JSON, more than the limit of %s', v_size, tasker.max_result_bytes());
    END IF;
    -- The other parents' large results, as recorded (steps.result_bytes): smaller ones are within the 64 MiB the
    -- limit leaves room for.
    SELECT c.name, sum(p.result_bytes) INTO v_child, v_other
    FROM tasker.step_edges AS mine
    JOIN tasker.steps AS c ON c.id = mine.child_id
    JOIN tasker.step_edges AS e ON e.child_id = mine.child_id AND e.parent_id <> v_step
    JOIN tasker.steps AS p ON p.id = e.parent_id AND p.result_bytes IS NOT NULL
    WHERE mine.parent_id = v_step
    GROUP BY c.id, c.name
    ORDER BY 2 DESC
    LIMIT 1;
    IF v_other + v_size > tasker.max_dependency_results_bytes() THEN
        RETURN format('the result (%s bytes of JSON) would bring the results handed to step %s to %s bytes, more '
                      'than the limit of %s', v_size, v_child, v_other + v_size, tasker.max_dependency_results_bytes());
    END IF;
    RETURN NULL;
END;
$fn$;
