-- 0013: conditions. A step may carry a condition (`when`, a SQL/JSON path predicate over its task's context and
-- its dependencies' results, functions/conditions.sql); when it is false as the step becomes ready, the step is
-- 'omitted' — finished without running, a null result for its dependents — which is not 'skipped' (an upstream
-- step failed).
ALTER TABLE tasker.steps ADD COLUMN condition jsonpath;
COMMENT ON COLUMN tasker.steps.condition IS
    'The step runs only when this predicate holds over {"context": ..., "deps": {name: result}} (NULL: always)';

-- The state checks with 'omitted' added. Each is looser than the one it replaces, so every existing row satisfies
-- it: NOT VALID spares a scan of the tables while the migration holds them.
ALTER TABLE tasker.steps
    DROP CONSTRAINT steps_state_check,
    ADD CONSTRAINT steps_state_check CHECK (state IN ('pending', 'enqueued', 'running', 'retrying', 'succeeded',
                                                      'failed', 'cancelled', 'skipped', 'resolved', 'omitted'))
        NOT VALID,
    DROP CONSTRAINT steps_lifecycle_check,
    ADD CONSTRAINT steps_lifecycle_check CHECK (
        (state IN ('succeeded', 'failed', 'cancelled', 'skipped', 'resolved', 'omitted')) = (finished_at IS NOT NULL)
        AND (state <> 'running' OR (lease IS NOT NULL AND lease_expires_at IS NOT NULL AND started_at IS NOT NULL))
        AND (state NOT IN ('enqueued', 'running', 'retrying') OR msg_id IS NOT NULL)
        AND (state <> 'retrying' OR next_attempt_at IS NOT NULL)) NOT VALID;

ALTER TABLE tasker.step_transitions
    DROP CONSTRAINT step_transitions_check,
    ADD CONSTRAINT step_transitions_check CHECK (from_state || '>' || to_state IN (
        'pending>enqueued', 'pending>cancelled', 'pending>skipped', 'pending>succeeded', 'pending>resolved',
        'pending>omitted',
        'enqueued>running', 'enqueued>cancelled', 'enqueued>succeeded', 'enqueued>resolved',
        'running>succeeded', 'running>running', 'running>retrying', 'running>failed', 'running>enqueued',
        'running>cancelled', 'running>resolved',
        'retrying>running', 'retrying>cancelled', 'retrying>succeeded', 'retrying>resolved',
        'failed>enqueued', 'failed>succeeded', 'failed>resolved',
        'skipped>pending', 'skipped>succeeded', 'skipped>resolved',
        'cancelled>pending', 'cancelled>succeeded', 'cancelled>resolved')) NOT VALID;

-- A step some child of which has a condition: its completions take the task's whole lock set (_lock_tasks) up
-- front, since omitting a child may reach steps and the task beyond the usual locks (complete.sql). Set at admission.
ALTER TABLE tasker.steps ADD COLUMN conditional_children boolean NOT NULL DEFAULT false;
