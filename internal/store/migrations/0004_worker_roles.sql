-- 0004: least-privilege database roles for workers (config/database/grants.sql, docs/install.md#database-roles).
--
-- A worker needs the worker protocol and nothing else: not the tables, not pgmq, not the operator's actions. And
-- a worker role is meant for some queues only. This migration makes that enforceable:
--
--   * tasker.queue_grants says which roles may work which queues ('*': every queue).
--   * The worker-facing protocol functions (claim, complete, complete_many, fail, heartbeat, release,
--     worker_heartbeat, worker_stopped) move, unchanged, into schema tasker_internal. In their place, schema
--     tasker gets functions with the same names, signatures and results that check the caller's queue grants and
--     then call them. These are SECURITY DEFINER: they run with the privileges of the schema's owner (the
--     operator's role), so a worker role needs EXECUTE on them and nothing else. Their search_path is pinned to
--     pg_catalog, tasker, pgmq, then pg_temp (schemas only trusted roles can create in), so a caller's
--     search_path or temporary objects cannot redirect what they run. Cost: about 10 µs per call.
--   * EXECUTE on every function of tasker and tasker_internal is revoked from PUBLIC; tasker.grant_worker gives a
--     role USAGE on schema tasker, EXECUTE on the worker functions and its queues (tasker.revoke_worker undoes it).
--
-- Who is checked: the session's login role (session_user; a SECURITY DEFINER function cannot see the invoker's
-- current_user, and the credential is what a grant is about). Superusers and roles with the privileges of the
-- schema's owner (the operator, its tests, psql sessions of the owner) pass without a grant, so nothing changes
-- for them. Others may work a queue when they have the privileges (membership with INHERIT) of a role granted it:
-- grant a NOLOGIN group role and make login roles its members, or grant the login role directly. A denied call
-- raises SQLSTATE 42501 (insufficient_privilege) "permission denied for queue <q>" and changes nothing.
-- claim checks its queue; complete, complete_many, fail, heartbeat and release check the queue of the step each
-- lease belongs to (a lease is unguessable, so this is defence in depth); worker_heartbeat checks the queues it
-- reports.
--
-- Later migrations that change a worker function must change tasker_internal.<name> (CREATE OR REPLACE FUNCTION
-- tasker_internal.claim ...). A CREATE OR REPLACE of tasker.<name> would drop the check — it fails closed: the
-- replacement runs with the worker's own privileges, which reach no table. The wrappers are generated from the
-- catalogue below; a later migration that changes a worker function's signature drops the wrapper, changes
-- tasker_internal.<name>, and re-creates the wrapper the same way (test/dbroles checks the result).

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

-- True when session_user needs no queue grant: a superuser, or a role with the privileges of tasker's owner.
CREATE FUNCTION tasker._unrestricted() RETURNS boolean
LANGUAGE sql STABLE AS $fn$
    SELECT pg_catalog.pg_has_role(session_user, n.nspowner, 'USAGE')
    FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'tasker'
$fn$;

-- Raises insufficient_privilege unless session_user may work every one of the queues. Malformed names are left to
-- the protocol function's own validation (it reports them as invalid parameters).
CREATE FUNCTION tasker._authorize_queues(p_queues text[]) RETURNS void
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_denied text;
BEGIN
    IF tasker._unrestricted() THEN
        RETURN;
    END IF;
    SELECT q.name INTO v_denied
    FROM unnest(p_queues) AS q (name)
    WHERE q.name ~ '^[a-z0-9_]{1,40}$'
      AND NOT EXISTS (SELECT FROM tasker.queue_grants AS g
                      JOIN pg_catalog.pg_roles AS r ON r.rolname = g.role_name
                      WHERE g.queue IN (q.name, '*')
                        AND pg_catalog.pg_has_role(session_user, r.oid, 'USAGE'))
    LIMIT 1;
    IF v_denied IS NOT NULL THEN
        RAISE EXCEPTION 'permission denied for queue %', v_denied
            USING ERRCODE = '42501',
                  DETAIL = format('Role %s has no grant for queue %s in tasker.queue_grants.', session_user, v_denied),
                  HINT = 'Grant it with tasker.grant_worker (config/database/grants.sql).';
    END IF;
END;
$fn$;

-- The same for the queues of the steps the leases were issued for (unknown leases are the protocol's business).
CREATE FUNCTION tasker._authorize_leases(p_leases uuid[]) RETURNS void
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF tasker._unrestricted() THEN
        RETURN;
    END IF;
    PERFORM tasker._authorize_queues(ARRAY(
        SELECT DISTINCT s.queue FROM tasker.steps AS s
        WHERE s.id = ANY (ARRAY(SELECT tasker.lease_step_id(l.lease) FROM unnest(p_leases) AS l (lease)))));
END;
$fn$;

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

-- Move each worker function to tasker_internal and generate its checked wrapper in tasker: same argument list
-- (names, types, defaults) and result, read from the catalogue.
DO $do$
DECLARE
    f      record;
    v_args text;
    v_call text;
    v_body text;
BEGIN
    FOR f IN
        SELECT w.name, p.oid, p.proname, w.guard, p.proretset,
               pg_catalog.pg_get_function_arguments(p.oid) AS args,
               pg_catalog.pg_get_function_identity_arguments(p.oid) AS identity_args,
               pg_catalog.pg_get_function_result(p.oid) AS result,
               p.proargnames, p.proargmodes
        FROM tasker.worker_functions AS w
        LEFT JOIN pg_catalog.pg_proc AS p
               ON p.proname = w.name AND p.pronamespace = 'tasker'::regnamespace
        ORDER BY w.name
    LOOP
        IF f.oid IS NULL THEN
            RAISE EXCEPTION 'worker function tasker.% does not exist', f.name;
        END IF;
        -- The call passes the input parameters by position, qualified with the function's name so that they never
        -- clash with its result columns (VARIADIC ones as such).
        SELECT string_agg(CASE WHEN a.mode = 'v' THEN 'VARIADIC ' ELSE '' END
                          || quote_ident(f.proname) || '.' || quote_ident(a.name), ', ' ORDER BY a.ord)
        INTO v_args
        FROM unnest(f.proargnames,
                    coalesce(f.proargmodes, array_fill('i'::"char", ARRAY[cardinality(f.proargnames)])))
             WITH ORDINALITY AS a (name, mode, ord)
        WHERE a.mode IN ('i', 'b', 'v');
        v_call := format('tasker_internal.%I(%s)', f.proname, coalesce(v_args, ''));
        v_body := CASE
            WHEN f.proretset THEN format('RETURN QUERY SELECT * FROM %s;', v_call)
            WHEN f.result = 'void' THEN format('PERFORM %s;', v_call)
            ELSE format('RETURN %s;', v_call)
        END;

        EXECUTE format('ALTER FUNCTION tasker.%I(%s) SET SCHEMA tasker_internal', f.proname, f.identity_args);
        EXECUTE format(
            $sql$CREATE FUNCTION tasker.%1$I(%2$s) RETURNS %3$s
                 LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, tasker, pgmq, pg_temp AS $body$
                 BEGIN
                     PERFORM %4$s;
                     %5$s
                 END;
                 $body$$sql$,
            f.proname, f.args, f.result, f.guard, v_body);
        EXECUTE format('COMMENT ON FUNCTION tasker.%I(%s) IS %L', f.proname, f.identity_args,
                       'Worker protocol (checks queue grants, then runs tasker_internal.' || f.proname || ').');
    END LOOP;
END;
$do$;

-- Nothing in tasker or tasker_internal is callable by PUBLIC: the owner calls everything, worker roles get the
-- worker functions from grant_worker. Functions the owner creates later start without PUBLIC EXECUTE too.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tasker FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA tasker_internal FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Makes role a worker role for queues (replacing its previous queues; '*' = every queue): USAGE on schema tasker,
-- EXECUTE on the worker functions, rows in tasker.queue_grants. Run by tasker's owner or a superuser. Idempotent.
CREATE FUNCTION tasker.grant_worker(role name, queues text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    f record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = grant_worker.role) THEN
        RAISE EXCEPTION 'role % does not exist', grant_worker.role USING ERRCODE = '42704';
    END IF;
    IF queues IS NULL OR cardinality(queues) = 0 THEN
        RAISE EXCEPTION 'a worker role needs at least one queue' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA tasker TO %I', grant_worker.role);
    FOR f IN SELECT p.oid::regprocedure AS fn FROM tasker.worker_functions AS w
             JOIN pg_catalog.pg_proc AS p ON p.proname = w.name AND p.pronamespace = 'tasker'::regnamespace LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f.fn, grant_worker.role);
    END LOOP;
    DELETE FROM tasker.queue_grants AS g WHERE g.role_name = grant_worker.role;
    INSERT INTO tasker.queue_grants (role_name, queue)
    SELECT DISTINCT grant_worker.role, btrim(q) FROM unnest(queues) AS q WHERE btrim(q) <> '';
END;
$fn$;

-- Takes everything grant_worker gave back.
CREATE FUNCTION tasker.revoke_worker(role name) RETURNS void
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
REVOKE EXECUTE ON FUNCTION tasker.grant_worker(name, text[]), tasker.revoke_worker(name) FROM PUBLIC;
