-- 0001: the tasker data model. See docs/architecture.md for the state machines and the reasons behind the layout.
--
-- Lock order (every function that changes state follows it, which is what keeps the protocol deadlock-free):
-- task rows (FOR NO KEY UPDATE, ascending id) before step rows; nothing waits for a queue message lock while
-- holding a task or step lock (message deletes and visibility changes skip locked rows; see functions/locks.sql).

-- Queues tasker has created (or adopted) in pgmq. Upkeep only trims these queues' archives: other users of pgmq in
-- the same database keep their own policies.
CREATE TABLE tasker.queues (
    name       text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queues_name_check CHECK (name ~ '^[a-z0-9_]{1,40}$')
);

CREATE TABLE tasker.tasks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The admission key (the Task CR's UID): admitting the same key twice returns the first task.
    external_key     text NOT NULL,
    namespace        text NOT NULL DEFAULT '',
    name             text NOT NULL DEFAULT '',
    -- Default queue of the task's steps ('' when every step names its own).
    queue            text NOT NULL DEFAULT '',
    priority         integer NOT NULL DEFAULT 0,
    context          jsonb,
    state            text NOT NULL DEFAULT 'pending',
    step_count       integer NOT NULL,
    -- Steps not yet in a terminal state. Maintained under the task's row lock; reaching 0 finishes the task.
    unfinished_steps integer NOT NULL,
    -- How long a finished task is kept (with its history) before upkeep deletes it.
    retention        interval NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    expires_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tasks_external_key_key UNIQUE (external_key),
    CONSTRAINT tasks_state_check CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    -- Finished exactly when completed_at is set, and then with an expiry and no live step (failing or cancelling
    -- a task stops all of its steps); running implies started.
    CONSTRAINT tasks_lifecycle_check CHECK (
        (state IN ('succeeded', 'failed', 'cancelled')) = (completed_at IS NOT NULL)
        AND (completed_at IS NULL) = (expires_at IS NULL)
        AND (completed_at IS NULL OR unfinished_steps = 0)
        AND (state <> 'running' OR started_at IS NOT NULL)
        AND step_count >= 1 AND unfinished_steps BETWEEN 0 AND step_count)
) WITH (fillfactor = 70); -- the step counter changes with every finished step: keep those updates HOT

-- Active tasks (upkeep's scans start here); finished tasks by expiry (retention GC). The predicate is on
-- completed_at, not state, so that pending -> running stays a HOT update.
CREATE INDEX tasks_active_idx ON tasker.tasks (id) WHERE completed_at IS NULL;
CREATE INDEX tasks_expires_at_idx ON tasker.tasks (expires_at) WHERE expires_at IS NOT NULL;

-- Steps are updated several times each (claim, complete, children counting): leave room on every page so that
-- the updates stay HOT. No index covers a column the hot path changes (the lease embeds the step id, so lookups by
-- lease go through the primary key), which is what makes HOT updates possible.
--
-- CHECK constraints are few and cheap on purpose: PostgreSQL prepares every CHECK expression of a table again at
-- the start of each statement that writes it, so on a protocol call touching a few rows their number, not the
-- rows, is the cost (12 separate constraints with two regular expressions made a one-row update ~8x slower).
-- They cover the state names and the invariants that tie state to the other columns. Values that never change
-- after admission (names, handler, queue, retry policy) are validated by tasker.admit instead.
CREATE TABLE tasker.steps (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id           bigint NOT NULL REFERENCES tasker.tasks (id) ON DELETE CASCADE,
    name              text NOT NULL,
    handler           text NOT NULL,
    queue             text NOT NULL,
    state             text NOT NULL DEFAULT 'pending',
    inputs            jsonb,
    result            jsonb,
    last_error        jsonb,
    -- Claims so far (a re-claim after a lease expired counts; a release gives the attempt back).
    attempts          integer NOT NULL DEFAULT 0,
    -- attempts at the last manual retry: the retry budget is attempts - retry_base < max_attempts.
    retry_base        integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    backoff_base_ms   integer NOT NULL,
    backoff_max_ms    integer NOT NULL,
    backoff_jitter    real NOT NULL,
    -- Per-attempt time limit enforced by upkeep (0 = none).
    timeout_seconds   integer NOT NULL DEFAULT 0,
    parent_count      integer NOT NULL DEFAULT 0,
    -- Parents not yet succeeded or resolved. Decremented under the task's row lock, so a fan-in step is enqueued
    -- exactly once however many parents finish at the same time.
    remaining_parents integer NOT NULL DEFAULT 0,
    -- The step's current pgmq message (the last one sent for it). A message whose id differs is stale.
    msg_id            bigint,
    -- The lease of the latest claim (kept after the step leaves running, so that a late caller learns why it
    -- lost). A lease is valid only while state = 'running'.
    lease             uuid,
    lease_expires_at  timestamptz,
    worker_id         text,
    next_attempt_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Start of the current (or last) attempt.
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT steps_task_id_name_key UNIQUE (task_id, name),
    CONSTRAINT steps_state_check CHECK (state IN ('pending', 'enqueued', 'running', 'retrying', 'succeeded',
                                                  'failed', 'cancelled', 'skipped', 'resolved')),
    -- Finished exactly when finished_at is set; running means a lease with an expiry; every queued or running
    -- step has a message; a retrying step knows when it runs next.
    CONSTRAINT steps_lifecycle_check CHECK (
        (state IN ('succeeded', 'failed', 'cancelled', 'skipped', 'resolved')) = (finished_at IS NOT NULL)
        AND (state <> 'running' OR (lease IS NOT NULL AND lease_expires_at IS NOT NULL AND started_at IS NOT NULL))
        AND (state NOT IN ('enqueued', 'running', 'retrying') OR msg_id IS NOT NULL)
        AND (state <> 'retrying' OR next_attempt_at IS NOT NULL)),
    CONSTRAINT steps_counts_check CHECK (
        attempts >= 0 AND retry_base BETWEEN 0 AND attempts AND attempts - retry_base <= max_attempts
        AND remaining_parents BETWEEN 0 AND parent_count)
) WITH (fillfactor = 75);

CREATE TABLE tasker.step_edges (
    task_id   bigint NOT NULL,
    parent_id bigint NOT NULL REFERENCES tasker.steps (id) ON DELETE CASCADE,
    child_id  bigint NOT NULL REFERENCES tasker.steps (id) ON DELETE CASCADE,
    PRIMARY KEY (parent_id, child_id),
    CONSTRAINT step_edges_no_self_check CHECK (parent_id <> child_id)
);
CREATE INDEX step_edges_child_id_idx ON tasker.step_edges (child_id);

-- Append-only histories. No foreign key (an RI check per inserted row would tax the hot path): history rows are
-- deleted together with their task by upkeep, and a trigger below refuses every other UPDATE/DELETE/TRUNCATE.
-- The CHECK on (from_state, to_state) is the step state machine of docs/architecture.md: an illegal transition
-- cannot be recorded.
CREATE TABLE tasker.step_transitions (
    task_id    bigint NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    step_id    bigint NOT NULL,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    attempt    integer NOT NULL,
    worker_id  text,
    reason     text NOT NULL,
    metadata   jsonb,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_id, id),
    CONSTRAINT step_transitions_check CHECK (from_state || '>' || to_state IN (
        'pending>enqueued', 'pending>cancelled', 'pending>skipped', 'pending>succeeded', 'pending>resolved',
        'enqueued>running', 'enqueued>cancelled', 'enqueued>succeeded', 'enqueued>resolved',
        'running>succeeded', 'running>running', 'running>retrying', 'running>failed', 'running>enqueued',
        'running>cancelled', 'running>resolved',
        'retrying>running', 'retrying>cancelled', 'retrying>succeeded', 'retrying>resolved',
        'failed>enqueued', 'failed>succeeded', 'failed>resolved',
        'skipped>pending', 'skipped>succeeded', 'skipped>resolved',
        'cancelled>pending', 'cancelled>succeeded', 'cancelled>resolved'))
);

CREATE TABLE tasker.task_transitions (
    task_id    bigint NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    reason     text NOT NULL,
    metadata   jsonb,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_id, id),
    CONSTRAINT task_transitions_check CHECK (from_state || '>' || to_state IN (
        'pending>running', 'pending>succeeded', 'pending>cancelled',
        'running>succeeded', 'running>failed', 'running>cancelled',
        'failed>running', 'failed>succeeded'))
);

-- The guards that keep the histories append-only (functions and triggers) are in functions/history.sql.

-- Worker processes, as they report themselves (tasker.worker_heartbeat). Informational: the protocol never
-- requires a worker to be registered.
CREATE TABLE tasker.workers (
    id                text PRIMARY KEY,
    queues            text[] NOT NULL DEFAULT '{}',
    slots             integer NOT NULL DEFAULT 0,
    in_flight         integer NOT NULL DEFAULT 0,
    hostname          text NOT NULL DEFAULT '',
    metadata          jsonb,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workers_id_check CHECK (length(id) BETWEEN 1 AND 255),
    CONSTRAINT workers_counts_check CHECK (slots >= 0 AND in_flight >= 0)
);
