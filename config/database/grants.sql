-- Database roles for tasker-operator: one role for the operator, least-privilege roles for workers.
-- See docs/install.md ("Database roles") for the walkthrough.
--
-- The operator's role owns schema tasker (and the pgmq schema when the project's pgmq-compatible schema is used):
-- it runs the migrations (the Helm hook Job, or the manager at start-up) and everything the manager does. A worker
-- role may only call the worker protocol functions (tasker.claim, complete, complete_many, fail, heartbeat,
-- release, worker_heartbeat, worker_stopped) and only for its queues; it cannot read or change any table, call
-- pgmq, or use the operator's functions (admit, cancel_task, resolve_step, ...). The queue check is enforced by
-- the database (migration 0004_worker_roles: tasker.queue_grants and checked SECURITY DEFINER wrappers).
--
-- Run it with psql as a superuser (or a role with CREATEROLE that may grant on the database), connected to the
-- tasker database. It is idempotent: run it again to change a password or a worker's queues.
--
--   1. Before installing the operator (creates the operator's role; worker variables are ignored until step 2):
--
--        psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -v operator_password="$OPERATOR_PASSWORD" -f config/database/grants.sql
--
--   2. After the first migration (the operator is installed), once per set of queues:
--
--        psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -v worker_role=tasker_worker_orders \
--             -v worker_password="$WORKER_PASSWORD" -v worker_queues=orders,payments -f config/database/grants.sql
--
-- Variables (psql -v name=value; all optional):
--   operator_role      the operator's login role (default tasker_operator)
--   operator_password  its password. Unset: a new role gets none (use another authentication method, or set one
--                      later) and an existing role's password is left as it is.
--   pgmq_extension     on: create the real pgmq extension (as the superuser running this) and give the operator's
--                      role the privileges it needs on it. Default off: the operator installs the extension itself
--                      when it may, else the project's pgmq-compatible schema (which it then owns).
--   worker_role        a worker role to create or update. Nothing is done for workers without it.
--   worker_password    its password (as operator_password). Use `-v worker_login=off` for a NOLOGIN group role
--                      whose members (login roles you create) inherit its queues.
--   worker_queues      comma-separated queues the worker role may work, or * for every queue; replaces the
--                      role's previous queues. Required with worker_role.
--   worker_revoke      on: take the worker role's grants and queues away instead (the role is kept; DROP ROLE it
--                      yourself after `REASSIGN OWNED`/`DROP OWNED` if you want it gone).
--   worker_connection_limit          connections the worker role may hold at once (default 200: a pool of 50
--                      worker Pods with the SDK's default pool of 4). -1: no limit.
--   worker_statement_timeout         server-side bound on one statement of the worker role (default 30s; every
--                      protocol call takes milliseconds).
--   worker_idle_in_transaction_timeout  how long a worker session may sit idle inside a transaction before the
--                      server ends it (default 10s): the protocol never needs one, and a session that calls claim
--                      inside BEGIN and idles would hold its steps' locks. These three apply to the login role
--                      (for a NOLOGIN group role, set them on its member login roles: ALTER ROLE ... SET).

\set ON_ERROR_STOP on
\if :{?operator_role}
\else
  \set operator_role tasker_operator
\endif
\if :{?pgmq_extension}
\else
  \set pgmq_extension off
\endif
\if :{?worker_login}
\else
  \set worker_login on
\endif
\if :{?worker_revoke}
\else
  \set worker_revoke off
\endif
\if :{?worker_connection_limit}
\else
  \set worker_connection_limit 200
\endif
\if :{?worker_statement_timeout}
\else
  \set worker_statement_timeout 30s
\endif
\if :{?worker_idle_in_transaction_timeout}
\else
  \set worker_idle_in_transaction_timeout 10s
\endif

-- ---------------------------------------------------------------------------------------------------------------
-- The operator's role.

SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'operator_role') AS create_operator \gset
\if :create_operator
  CREATE ROLE :"operator_role" LOGIN;
\endif
\if :{?operator_password}
  ALTER ROLE :"operator_role" WITH LOGIN PASSWORD :'operator_password';
\endif
-- CREATE: the migrations create schemas tasker, tasker_internal and (compatible schema) pgmq in this database.
GRANT CONNECT, CREATE ON DATABASE :"DBNAME" TO :"operator_role";
-- No one else gets into the schemas by default (PUBLIC has no rights on new schemas; PostgreSQL 15+ also keeps
-- PUBLIC out of schema public). Revoke what older servers grant on public, so worker roles cannot create objects.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

\if :pgmq_extension
  CREATE EXTENSION IF NOT EXISTS pgmq;
  GRANT USAGE, CREATE ON SCHEMA pgmq TO :"operator_role";
  GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES ON ALL TABLES IN SCHEMA pgmq TO :"operator_role";
  GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA pgmq TO :"operator_role";
  GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgmq TO :"operator_role";
\endif

-- ---------------------------------------------------------------------------------------------------------------
-- A worker role.

\if :{?worker_role}
  SELECT to_regprocedure('tasker.grant_worker(name, text[])') IS NOT NULL AS migrated \gset
  \if :migrated
  \else
    \echo 'schema tasker is not migrated yet (no tasker.grant_worker): install the operator first, then run this again for worker roles'
    \quit
  \endif

  \if :worker_revoke
    SELECT tasker.revoke_worker(:'worker_role');
    \echo revoked worker role :worker_role
  \else
    \if :{?worker_queues}
    \else
      DO $$ BEGIN RAISE EXCEPTION 'worker_queues is required with worker_role (comma-separated queue names, or *)'; END $$;
    \endif
    SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'worker_role') AS create_worker \gset
    \if :create_worker
      CREATE ROLE :"worker_role";
    \endif
    \if :worker_login
      ALTER ROLE :"worker_role" WITH LOGIN;
    \else
      ALTER ROLE :"worker_role" WITH NOLOGIN;
    \endif
    \if :{?worker_password}
      ALTER ROLE :"worker_role" WITH PASSWORD :'worker_password';
    \endif
    -- Server-side bounds, so that a worker (in any language) cannot hold connections or locks without end.
    ALTER ROLE :"worker_role" CONNECTION LIMIT :worker_connection_limit;
    ALTER ROLE :"worker_role" IN DATABASE :"DBNAME" SET statement_timeout = :'worker_statement_timeout';
    ALTER ROLE :"worker_role" IN DATABASE :"DBNAME"
      SET idle_in_transaction_session_timeout = :'worker_idle_in_transaction_timeout';
    GRANT CONNECT ON DATABASE :"DBNAME" TO :"worker_role";
    -- USAGE on schema tasker, EXECUTE on the worker functions, and the queues (tasker.queue_grants).
    SELECT tasker.grant_worker(:'worker_role', string_to_array(replace(:'worker_queues', ' ', ''), ','));
    SELECT format('worker role %s may work queues %s', :'worker_role',
                  (SELECT string_agg(queue, ', ' ORDER BY queue) FROM tasker.queue_grants WHERE role_name = :'worker_role'))
           AS granted \gset
    \echo :granted
  \endif
\endif
