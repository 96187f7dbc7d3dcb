-- 0004: least-privilege database roles for workers (config/database/grants.sql, docs/install.md#database-roles).
--
-- A worker needs the worker protocol and nothing else: not the tables, not pgmq, not the operator's actions. And
-- a worker role is meant for some queues only. This migration makes that enforceable:
--
--   * tasker.queue_grants says which roles may work which queues ('*': every queue).
--   * The worker-facing protocol functions live in schema tasker_internal; schema tasker has SECURITY DEFINER
--     entry points with the same names that check the caller's queue grants first (functions/roles.sql says who
--     is checked and how). tasker.worker_functions lists them: tasker.grant_worker gives a role EXECUTE on those.
--   * EXECUTE on every function of tasker and tasker_internal is revoked from PUBLIC.
--
-- The functions themselves are in internal/store/functions (this migration created them before functions had
-- files of their own).

CREATE SCHEMA tasker_internal;
COMMENT ON SCHEMA tasker_internal IS
    'tasker: implementations of the worker protocol functions, called through the checked wrappers in schema tasker';
REVOKE ALL ON SCHEMA tasker_internal FROM PUBLIC;

CREATE TABLE tasker.queue_grants (
    role_name  name NOT NULL,
    queue      text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, queue),
    CONSTRAINT queue_grants_queue_check CHECK (queue = '*' OR queue ~ '^[a-z0-9_]{1,40}$')
);
COMMENT ON TABLE tasker.queue_grants IS
    'Queues each role may work with the worker protocol (* = all). Maintained with tasker.grant_worker.';

-- The worker protocol: each function with the check its wrapper runs first (in terms of its parameters).
CREATE TABLE tasker.worker_functions (
    name  text PRIMARY KEY,
    guard text NOT NULL
);
COMMENT ON TABLE tasker.worker_functions IS
    'The worker protocol functions (schema tasker) a worker role may execute, and the check each makes first.';
INSERT INTO tasker.worker_functions (name, guard) VALUES
    ('claim',            'tasker._authorize_queues(ARRAY[queue_name])'),
    ('complete',         'tasker._authorize_leases(ARRAY[lease])'),
    ('complete_many',    'tasker._authorize_leases(leases)'),
    ('fail',             'tasker._authorize_leases(ARRAY[lease])'),
    ('heartbeat',        'tasker._authorize_leases(ARRAY[lease])'),
    ('release',          'tasker._authorize_leases(ARRAY[lease])'),
    ('worker_heartbeat', 'tasker._authorize_queues(queues)'),
    ('worker_stopped',   'NULL'); -- informational record only

-- Nothing in tasker or tasker_internal is callable by PUBLIC: the owner calls everything, worker roles get the
-- worker functions from grant_worker. Functions the owner creates later start without PUBLIC EXECUTE too.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tasker FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tasker_internal FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
