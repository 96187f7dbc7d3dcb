-- 0015: map steps (forEach). A step with a for_each path runs once per element of the array the path gives over
-- {"context": ..., "deps": ...} when the step becomes ready: the engine expands it into instances (steps of the
-- same task, map_step_id naming it, item_index and item their element), which run and retry like any step; the map
-- step is 'mapping' meanwhile, and succeeds with their results as one array, in order, once all have finished
-- (functions/maps.sql).
ALTER TABLE tasker.steps
    ADD COLUMN for_each    jsonpath,
    -- Instances made when the map step was expanded (NULL: not expanded, or not a map step).
    ADD COLUMN map_size    integer,
    ADD COLUMN map_step_id bigint,
    ADD COLUMN item_index  integer,
    ADD COLUMN item        jsonb;
COMMENT ON COLUMN tasker.steps.for_each IS
    'The step runs once per element of the array this path gives over {"context", "deps"} (NULL: once)';
COMMENT ON COLUMN tasker.steps.map_step_id IS 'The map step this step is an instance of (NULL: an ordinary step)';

-- Instances of a map step, in order: its status counts and its gathered result read them. Set when an instance is
-- inserted and never changed, so updates of steps stay HOT; ordinary steps are not in the index.
CREATE INDEX steps_map_step_idx ON tasker.steps (map_step_id, item_index) WHERE map_step_id IS NOT NULL;

-- The state checks with 'mapping' added; looser than before (NOT VALID: see 0013).
ALTER TABLE tasker.steps
    DROP CONSTRAINT steps_state_check,
    ADD CONSTRAINT steps_state_check CHECK (state IN ('pending', 'enqueued', 'running', 'retrying', 'succeeded',
                                                      'failed', 'cancelled', 'skipped', 'resolved', 'omitted',
                                                      'waiting', 'mapping')) NOT VALID;

ALTER TABLE tasker.step_transitions
    DROP CONSTRAINT step_transitions_check,
    ADD CONSTRAINT step_transitions_check CHECK (from_state || '>' || to_state IN (
        'pending>enqueued', 'pending>cancelled', 'pending>skipped', 'pending>succeeded', 'pending>resolved',
        'pending>omitted', 'pending>waiting', 'pending>mapping', 'pending>failed',
        'enqueued>running', 'enqueued>cancelled', 'enqueued>succeeded', 'enqueued>resolved',
        'running>succeeded', 'running>running', 'running>retrying', 'running>failed', 'running>enqueued',
        'running>cancelled', 'running>resolved',
        'retrying>running', 'retrying>cancelled', 'retrying>succeeded', 'retrying>resolved',
        'waiting>succeeded', 'waiting>resolved', 'waiting>cancelled', 'waiting>waiting', 'waiting>failed',
        'mapping>succeeded', 'mapping>resolved', 'mapping>cancelled', 'mapping>failed',
        'failed>enqueued', 'failed>succeeded', 'failed>resolved', 'failed>waiting', 'failed>mapping',
        'skipped>pending', 'skipped>succeeded', 'skipped>resolved',
        'cancelled>pending', 'cancelled>succeeded', 'cancelled>resolved', 'cancelled>mapping')) NOT VALID;

-- A map step that gives no array fails its task at admission: before any step ran.
ALTER TABLE tasker.task_transitions
    DROP CONSTRAINT task_transitions_check,
    ADD CONSTRAINT task_transitions_check CHECK (from_state || '>' || to_state IN (
        'pending>running', 'pending>succeeded', 'pending>cancelled', 'pending>failed',
        'running>succeeded', 'running>failed', 'running>cancelled',
        'failed>running', 'failed>succeeded')) NOT VALID;

-- What claim returns gains the instance's element and index (NULL for other steps): the functions that return
-- claim's columns go, and functions/claim.sql and complete.sql create them again.
DROP FUNCTION IF EXISTS tasker.claim(text, integer, integer, text);
DROP FUNCTION IF EXISTS tasker_internal.claim(text, integer, integer, text);
DROP FUNCTION IF EXISTS tasker._claimed(bigint[]);
DROP FUNCTION IF EXISTS tasker.complete_and_claim(uuid[], jsonb[], integer, integer, text);
DROP FUNCTION IF EXISTS tasker_internal.complete_and_claim(uuid[], jsonb[], integer, integer, text);
