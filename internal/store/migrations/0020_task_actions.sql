-- 0020: the operator's actions (a Task's spec.actions: retry, resolve, complete, signal) are carried out once each.
-- The operator records an action's id here in the transaction that carries it out; an action whose id is here
-- already is not carried out again — as happens when the status write that lists it as done is lost (a write
-- conflict) and the next reconcile sees it as new. Rows go with their task.
CREATE TABLE tasker.task_actions (
    task_id   bigint NOT NULL REFERENCES tasker.tasks (id) ON DELETE CASCADE,
    action_id text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_id, action_id),
    CONSTRAINT task_actions_action_id_check CHECK (length(action_id) BETWEEN 1 AND 253)
);
COMMENT ON TABLE tasker.task_actions IS 'Actions carried out on a task, by id: each is carried out once';
