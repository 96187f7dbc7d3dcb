-- 0014: waits and signals. A step may wait for a named signal instead of running a handler (wait_signal): when
-- it becomes ready it is 'waiting' — no message, no worker — until tasker.signal(task, name, payload) completes it
-- with the payload as its result, or its wait_timeout_seconds pass (upkeep: the retry policy applies, each retry
-- waits again). A signal that arrives before its step waits is kept (tasker.signals) and completes the step as
-- soon as it becomes ready.
ALTER TABLE tasker.steps
    ADD COLUMN wait_signal          text,
    ADD COLUMN wait_timeout_seconds integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN tasker.steps.wait_signal IS
    'The signal the step waits for instead of running a handler (NULL: an ordinary step)';

CREATE TABLE tasker.signals (
    task_id bigint NOT NULL REFERENCES tasker.tasks (id) ON DELETE CASCADE,
    name    text NOT NULL,
    payload jsonb,
    reason  text,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_id, name)
);
COMMENT ON TABLE tasker.signals IS 'Signals sent to tasks (tasker.signal): the first of each name counts';

-- The state checks with 'waiting' added; looser than before (NOT VALID: see 0013).
ALTER TABLE tasker.steps
    DROP CONSTRAINT steps_state_check,
    ADD CONSTRAINT steps_state_check CHECK (state IN ('pending', 'enqueued', 'running', 'retrying', 'succeeded',
                                                      'failed', 'cancelled', 'skipped', 'resolved', 'omitted',
                                                      'waiting')) NOT VALID;

ALTER TABLE tasker.step_transitions
    DROP CONSTRAINT step_transitions_check,
    ADD CONSTRAINT step_transitions_check CHECK (from_state || '>' || to_state IN (
        'pending>enqueued', 'pending>cancelled', 'pending>skipped', 'pending>succeeded', 'pending>resolved',
        'pending>omitted', 'pending>waiting',
        'enqueued>running', 'enqueued>cancelled', 'enqueued>succeeded', 'enqueued>resolved',
        'running>succeeded', 'running>running', 'running>retrying', 'running>failed', 'running>enqueued',
        'running>cancelled', 'running>resolved',
        'retrying>running', 'retrying>cancelled', 'retrying>succeeded', 'retrying>resolved',
        'waiting>succeeded', 'waiting>resolved', 'waiting>cancelled', 'waiting>waiting', 'waiting>failed',
        'failed>enqueued', 'failed>succeeded', 'failed>resolved', 'failed>waiting',
        'skipped>pending', 'skipped>succeeded', 'skipped>resolved',
        'cancelled>pending', 'cancelled>succeeded', 'cancelled>resolved')) NOT VALID;
