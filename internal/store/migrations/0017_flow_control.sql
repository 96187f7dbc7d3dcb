-- 0017: flow control. Concurrency groups (a Task's spec.concurrency: at most max_running unfinished Tasks of a
-- group key hold a slot; the others wait, in admission order) and queue limits (at most max_running running steps
-- of a queue and a token-bucket rate of claims), both enforced by the functions of functions/concurrency.sql and
-- functions/queue_limits.sql, so they hold for every worker and with the operator down. Tasks and queues that use
-- neither pay a NULL check (tasks.concurrency_group) or a flag read claim already makes (queues.limited).

-- The group a task belongs to: '<namespace>/<group>' or '<namespace>/<group>=<key value>'. NULL for a task without
-- spec.concurrency (almost all): the statements that finish tasks then skip flow control. Never changed after
-- admission.
ALTER TABLE tasker.tasks ADD COLUMN concurrency_group text;
COMMENT ON COLUMN tasker.tasks.concurrency_group IS
    'The concurrency group (namespace/group[=key]) of a task admitted with spec.concurrency; NULL: none';

-- One row per group that has ever had a task: its limit and strategy, those of its latest admission (changed only
-- by admissions, which serialise per group: concurrency.sql). The slots taken are the group's rows in
-- concurrency_members that are not waiting.
CREATE TABLE tasker.concurrency_groups (
    key         text PRIMARY KEY,
    max_running integer NOT NULL,
    strategy    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT concurrency_groups_check CHECK (max_running >= 1
                                               AND strategy IN ('Queue', 'CancelInProgress', 'CancelNewest'))
);
COMMENT ON TABLE tasker.concurrency_groups IS 'Concurrency groups: their limit and strategy';

-- One row per unfinished task of a group: holding a slot (waiting = false) or waiting for one. Deleted when the
-- task finishes. Waiters are released lowest task id (admission order) first.
CREATE TABLE tasker.concurrency_members (
    task_id   bigint PRIMARY KEY,
    group_key text NOT NULL,
    waiting   boolean NOT NULL,
    since     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX concurrency_members_group_idx ON tasker.concurrency_members (group_key, waiting, task_id);
COMMENT ON TABLE tasker.concurrency_members IS 'Unfinished tasks of concurrency groups: holding a slot or waiting';

-- Queue limits, written by the operator from Queue resources (or by hand): at most max_running steps of the queue
-- running at once (NULL: no limit), and at most rate_steps claims per rate_seconds (NULL: no rate), a token bucket
-- holding at most rate_steps tokens (the burst). Claims of the queue lock the row (locks.sql: before any message).
CREATE TABLE tasker.queue_limits (
    queue        text PRIMARY KEY,
    max_running  integer,
    rate_steps   integer,
    rate_seconds double precision,
    tokens       double precision NOT NULL DEFAULT 0,
    refilled_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT queue_limits_check CHECK (queue ~ '^[a-z0-9_]{1,40}$'
        AND (max_running IS NULL OR max_running >= 1)
        AND (rate_steps IS NULL) = (rate_seconds IS NULL)
        AND (rate_steps IS NULL OR (rate_steps >= 1 AND rate_seconds > 0))
        AND tokens >= 0)
);
COMMENT ON TABLE tasker.queue_limits IS 'Limits of queues (tasker.set_queue_limits): running steps and claim rate';

-- Set on a queue while it has a row in queue_limits: claim, which reads the queue's row for prioritized anyway,
-- looks at the limits only then; complete_and_claim never claims a limited queue's steps for its caller.
ALTER TABLE tasker.queues ADD COLUMN limited boolean NOT NULL DEFAULT false;
