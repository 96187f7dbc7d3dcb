-- 0019: child workflows and task outputs (functions/children.sql). A step may run a child workflow: its "child"
-- document (the child's steps, context, arguments taken from paths, outputs) is stored with it at admission, and
-- when the step becomes ready the engine inserts the child's steps into the same task, named "<step>/<child step>",
-- with child_of naming the step and their own context (the child's, with its parameters under "params"). The step
-- is 'mapping' meanwhile — expanded and waiting for the steps it expanded into, as a map step is — and succeeds
-- with the child's outputs once the child's steps have all finished. A task may declare outputs of its own
-- (tasks.outputs: name -> path), evaluated when its status is read.
ALTER TABLE tasker.steps
    ADD COLUMN child      jsonb,
    -- Steps in the child made when the step was expanded (NULL: not expanded, or not a child workflow step).
    ADD COLUMN child_size integer,
    ADD COLUMN child_of   bigint,
    ADD COLUMN context    jsonb;
COMMENT ON COLUMN tasker.steps.child IS
    'The child workflow this step runs ({template, context, arguments_from, parameters, steps, outputs}; NULL: none)';
COMMENT ON COLUMN tasker.steps.child_of IS 'The step whose child workflow this step belongs to (NULL: the task''s own)';
COMMENT ON COLUMN tasker.steps.context IS 'The context handed to this step''s handler when not its task''s (a child''s)';

-- The steps of a child workflow: its gathering, a re-run and the status read them. Set when a step is inserted and
-- never changed, so updates of steps stay HOT; the task's own steps are not in the index.
CREATE INDEX steps_child_of_idx ON tasker.steps (child_of, id) WHERE child_of IS NOT NULL;

ALTER TABLE tasker.tasks ADD COLUMN outputs jsonb;
COMMENT ON COLUMN tasker.tasks.outputs IS 'The task''s declared outputs (name -> SQL/JSON path over {steps, context})';

-- A child workflow's step whose child failed is run again (its retry policy), or retried by hand: its child is
-- discarded and the step goes back to pending (mapping -> pending, failed -> pending), to be expanded afresh.
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
        'mapping>succeeded', 'mapping>resolved', 'mapping>cancelled', 'mapping>failed', 'mapping>pending',
        'failed>enqueued', 'failed>succeeded', 'failed>resolved', 'failed>waiting', 'failed>mapping',
        'failed>pending',
        'skipped>pending', 'skipped>succeeded', 'skipped>resolved',
        'cancelled>pending', 'cancelled>succeeded', 'cancelled>resolved', 'cancelled>mapping')) NOT VALID;

-- _admit_document_problem checks child workflows' steps too (a path argument); _fail_map says whether the task
-- stopped.
DROP FUNCTION IF EXISTS tasker._admit_document_problem(jsonb);
DROP FUNCTION IF EXISTS tasker._fail_map(tasker.steps, text);
-- _enqueue looks at conditions in the statement that looks at the rest.
DROP FUNCTION IF EXISTS tasker._failed_conditions(bigint[]);
