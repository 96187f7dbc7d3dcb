-- Queue grants of worker roles (migration 0004 has the tables).
--
-- Who is checked: the session's login role (session_user; a SECURITY DEFINER function cannot see the invoker's
-- current_user, and the credential is what a grant is about). Superusers and roles with the privileges of the
-- schema's owner (the operator, its tests, psql sessions of the owner) pass without a grant, so nothing changes
-- for them. Others may work a queue when they have the privileges (membership with INHERIT) of a role granted it:
-- grant a NOLOGIN group role and make login roles its members, or grant the login role directly. A denied call
-- raises SQLSTATE 42501 (insufficient_privilege) "permission denied for queue <q>" and changes nothing.
-- claim checks its queue; complete, complete_many, complete_and_claim, fail, heartbeat and release check the
-- queue of the step each lease belongs to (a lease is unguessable, so this is defence in depth; the message then
-- names no queue); worker_heartbeat checks the queues it reports, and it and worker_stopped the queues the
-- record they change reported so far.
--
-- A worker function is changed in tasker_internal.<name>; its entry point tasker.<name> (in the same file) checks
-- the grant and calls it. A CREATE OR REPLACE of tasker.<name> without the check would fail closed: it would run
-- with the worker's own privileges, which reach no table. test/dbroles checks the result.

-- True when session_user needs no queue grant: a superuser, or a role with the privileges of tasker's owner.
-- PL/pgSQL, not SQL: every worker call asks, and PostgreSQL plans a SQL function's body on each call (65 µs
-- here) but keeps a PL/pgSQL function's plan for the session.
CREATE OR REPLACE FUNCTION tasker._unrestricted() RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    RETURN (SELECT pg_catalog.pg_has_role(session_user, n.nspowner, 'USAGE')
            FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'tasker');
END;
$fn$;

-- The first of p_queues that session_user may not work (NULL: it may work them all). Malformed names are left to
-- the protocol function's own validation (it reports them as invalid parameters).
CREATE OR REPLACE FUNCTION tasker._denied_queue(p_queues text[]) RETURNS text
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF tasker._unrestricted() THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT q.name
            FROM unnest(p_queues) AS q (name)
            WHERE q.name ~ '^[a-z0-9_]{1,40}$'
              AND NOT EXISTS (SELECT FROM tasker.queue_grants AS g
                              JOIN pg_catalog.pg_roles AS r ON r.rolname = g.role_name
                              WHERE g.queue IN (q.name, '*')
                                AND pg_catalog.pg_has_role(session_user, r.oid, 'USAGE'))
            LIMIT 1);
END;
$fn$;

-- Raises insufficient_privilege unless session_user may work every one of the queues (which the caller named:
-- the message names the queue).
CREATE OR REPLACE FUNCTION tasker._authorize_queues(p_queues text[]) RETURNS void
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_denied text := tasker._denied_queue(p_queues);
BEGIN
    IF v_denied IS NOT NULL THEN
        RAISE EXCEPTION 'permission denied for queue %', v_denied
            USING ERRCODE = '42501',
                  DETAIL = format('Role %s has no grant for queue %s in tasker.queue_grants.', session_user, v_denied),
                  HINT = 'Grant it with tasker.grant_worker (config/database/grants.sql).';
    END IF;
END;
$fn$;

-- The same for the queues of the steps the leases were issued for (unknown leases are the protocol's business).
-- The caller did not name those queues, so the message does not either: a lease of a queue one may not work says
-- nothing about that queue.
CREATE OR REPLACE FUNCTION tasker._authorize_leases(p_leases uuid[]) RETURNS void
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF tasker._unrestricted() THEN
        RETURN;
    END IF;
    IF tasker._denied_queue(ARRAY(
        SELECT DISTINCT s.queue FROM tasker.steps AS s
        WHERE s.id = ANY (ARRAY(SELECT tasker.lease_step_id(l.lease) FROM unnest(p_leases) AS l (lease))))) IS NOT NULL
    THEN
        RAISE EXCEPTION 'permission denied for a lease of a queue this role may not work'
            USING ERRCODE = '42501',
                  DETAIL = format('Role %s has no grant in tasker.queue_grants for the queue of a step a lease was issued for.',
                                  session_user),
                  HINT = 'Report a lease with the credentials of a worker of its queue.';
    END IF;
END;
$fn$;

-- Raises insufficient_privilege unless session_user may work every queue the worker record worker_id (if any)
-- reports: a worker role may rewrite or delete only the records of workers of its own queues (those records
-- decide which Pods a scale-in removes).
CREATE OR REPLACE FUNCTION tasker._authorize_worker_record(p_worker_id text) RETURNS void
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF tasker._unrestricted() THEN
        RETURN;
    END IF;
    IF tasker._denied_queue((SELECT w.queues FROM tasker.workers AS w WHERE w.id = p_worker_id)) IS NOT NULL THEN
        RAISE EXCEPTION 'permission denied for worker %: it reports queues this role may not work', p_worker_id
            USING ERRCODE = '42501',
                  DETAIL = format('Role %s has no grant in tasker.queue_grants for a queue of worker %s.',
                                  session_user, p_worker_id),
                  HINT = 'Worker ids must be unique across pools (the SDK uses the Pod name).';
    END IF;
END;
$fn$;

-- Makes role a worker role for queues (replacing its previous queues; '*' = every queue): USAGE on schema tasker,
-- EXECUTE on the worker functions, rows in tasker.queue_grants. Run by tasker's owner or a superuser. Idempotent.
CREATE OR REPLACE FUNCTION tasker.grant_worker(role name, queues text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = grant_worker.role) THEN
        RAISE EXCEPTION 'role % does not exist', grant_worker.role USING ERRCODE = '42704';
    END IF;
    IF queues IS NULL OR cardinality(queues) = 0 THEN
        RAISE EXCEPTION 'a worker role needs at least one queue' USING ERRCODE = '22023';
    END IF;
    PERFORM tasker._grant_worker_functions(grant_worker.role);
    DELETE FROM tasker.queue_grants AS g WHERE g.role_name = grant_worker.role;
    INSERT INTO tasker.queue_grants (role_name, queue)
    SELECT DISTINCT grant_worker.role, btrim(q) FROM unnest(queues) AS q WHERE btrim(q) <> '';
END;
$fn$;

-- USAGE on schema tasker and EXECUTE on every worker function (tasker.worker_functions) for a role.
CREATE OR REPLACE FUNCTION tasker._grant_worker_functions(p_role name) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    f record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA tasker TO %I', p_role);
    FOR f IN SELECT p.oid::regprocedure AS fn FROM tasker.worker_functions AS w
             JOIN pg_catalog.pg_proc AS p ON p.proname = w.name AND p.pronamespace = 'tasker'::regnamespace LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f.fn, p_role);
    END LOOP;
END;
$fn$;

-- Gives every existing worker role (one with queue grants) the worker functions, including those added since its
-- grant_worker. store.Migrate runs it whenever it applies changed functions.
CREATE OR REPLACE FUNCTION tasker._regrant_workers() RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT g.role_name FROM tasker.queue_grants AS g
             JOIN pg_catalog.pg_roles AS o ON o.rolname = g.role_name ORDER BY 1 LOOP
        PERFORM tasker._grant_worker_functions(r.role_name);
    END LOOP;
END;
$fn$;

-- Takes everything grant_worker gave back.
CREATE OR REPLACE FUNCTION tasker.revoke_worker(role name) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    f record;
BEGIN
    DELETE FROM tasker.queue_grants AS g WHERE g.role_name = revoke_worker.role;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = revoke_worker.role) THEN
        RETURN;
    END IF;
    FOR f IN SELECT p.oid::regprocedure AS fn FROM tasker.worker_functions AS w
             JOIN pg_catalog.pg_proc AS p ON p.proname = w.name AND p.pronamespace = 'tasker'::regnamespace LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', f.fn, revoke_worker.role);
    END LOOP;
    EXECUTE format('REVOKE USAGE ON SCHEMA tasker FROM %I', revoke_worker.role);
END;
$fn$;
