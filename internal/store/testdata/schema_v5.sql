-- The schema tasker and tasker_internal as migrations 0001-0005 (the layout before function files) left them:
-- pg_dump --schema tasker --schema tasker_internal --inserts --no-owner of a database migrated by that release.
-- Frozen: the upgrade test (upgrade_test.go) restores it, puts live tasks in it and migrates it. Do not edit.
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: tasker; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA tasker;


--
-- Name: tasker_internal; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA tasker_internal;


--
-- Name: SCHEMA tasker_internal; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA tasker_internal IS 'tasker: implementations of the worker protocol functions, called through the checked wrappers in schema tasker';


--
-- Name: _authorize_leases(uuid[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._authorize_leases(p_leases uuid[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF tasker._unrestricted() THEN
        RETURN;
    END IF;
    PERFORM tasker._authorize_queues(ARRAY(
        SELECT DISTINCT s.queue FROM tasker.steps AS s
        WHERE s.id = ANY (ARRAY(SELECT tasker.lease_step_id(l.lease) FROM unnest(p_leases) AS l (lease)))));
END;
$$;


--
-- Name: _authorize_queues(text[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._authorize_queues(p_queues text[]) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $_$
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
$_$;


--
-- Name: _count_finished(bigint[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._count_finished(p_task_ids bigint[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ids    bigint[];
    v_counts integer[];
    v_states text[];
BEGIN
    SELECT array_agg(d.id), array_agg(d.n), array_agg(t.state) INTO v_ids, v_counts, v_states
    FROM (SELECT x.id, count(*)::integer AS n FROM unnest(p_task_ids) AS x (id) GROUP BY x.id) AS d
    JOIN tasker.tasks AS t ON t.id = d.id
    WHERE t.id = ANY (p_task_ids);

    WITH u AS (
        UPDATE tasker.tasks AS t
        SET unfinished_steps = t.unfinished_steps - v_counts[array_position(v_ids, t.id)],
            state = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                              AND t.state IN ('pending', 'running') THEN 'succeeded' ELSE t.state END,
            started_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                              THEN coalesce(t.started_at, clock_timestamp()) ELSE t.started_at END,
            completed_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                                     AND t.state IN ('pending', 'running')
                                THEN clock_timestamp() ELSE t.completed_at END,
            expires_at = CASE WHEN t.unfinished_steps = v_counts[array_position(v_ids, t.id)]
                                   AND t.state IN ('pending', 'running')
                              THEN clock_timestamp() + t.retention ELSE t.expires_at END,
            updated_at = clock_timestamp()
        WHERE t.id = ANY (v_ids)
        RETURNING t.id, t.state
    )
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
    SELECT u.id, v_states[array_position(v_ids, u.id)], u.state, 'all steps finished'
    FROM u WHERE u.state <> v_states[array_position(v_ids, u.id)];
END;
$$;


--
-- Name: _delete_messages(text, bigint[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._delete_messages(p_queue text, p_msg_ids bigint[]) RETURNS integer
    LANGUAGE plpgsql
    AS $_$
DECLARE
    n integer;
BEGIN
    IF p_msg_ids IS NULL OR cardinality(p_msg_ids) = 0 OR NOT tasker._queue_exists(p_queue) THEN
        RETURN 0;
    END IF;
    EXECUTE format($sql$
        DELETE FROM pgmq.%1$I AS q
        WHERE q.msg_id IN (SELECT l.msg_id FROM pgmq.%1$I AS l WHERE l.msg_id = ANY ($1) FOR UPDATE SKIP LOCKED)
        $sql$, 'q_' || p_queue)
        USING p_msg_ids;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$_$;


--
-- Name: _delete_messages_wait(text[], bigint[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._delete_messages_wait(p_queues text[], p_msg_ids bigint[]) RETURNS bigint[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    r     record;
    v_out bigint[] := '{}';
BEGIN
    FOR r IN SELECT m.queue, array_agg(m.msg_id ORDER BY m.msg_id) AS ids
             FROM unnest(p_queues, p_msg_ids) AS m (queue, msg_id)
             WHERE m.msg_id IS NOT NULL
             GROUP BY m.queue ORDER BY m.queue LOOP
        CONTINUE WHEN NOT tasker._queue_exists(r.queue);
        v_out := v_out || ARRAY(SELECT d.id FROM pgmq.delete(r.queue::text, r.ids::bigint[]) AS d (id));
    END LOOP;
    RETURN v_out;
END;
$$;


--
-- Name: _enqueue(bigint[], text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._enqueue(p_step_ids bigint[], p_reason text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ids    bigint[];
    v_queues text[];
    v_tasks  bigint[];
    v_att    integer[];
    v_states text[];
    v_msgs   bigint[];
BEGIN
    SELECT array_agg(s.id), array_agg(s.queue), array_agg(s.task_id), array_agg(s.attempts + 1), array_agg(s.state)
    INTO v_ids, v_queues, v_tasks, v_att, v_states
    FROM tasker.steps AS s WHERE s.id = ANY (p_step_ids);
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    v_msgs := tasker._send_for(v_queues, v_tasks, v_ids, v_att);
    WITH c AS MATERIALIZED (
        SELECT x.id, x.msg_id, x.from_state FROM unnest(v_ids, v_msgs, v_states) AS x (id, msg_id, from_state)
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'enqueued', msg_id = c.msg_id, finished_at = NULL, next_attempt_at = NULL,
            lease_expires_at = NULL, updated_at = clock_timestamp()
        FROM c
        WHERE s.id = c.id
        RETURNING s.id, s.task_id, s.attempts, c.from_state
    )
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
    SELECT u.task_id, u.id, u.from_state, 'enqueued', u.attempts, p_reason FROM u;
    RETURN cardinality(v_ids);
END;
$$;


--
-- Name: _ensure_queue(text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._ensure_queue(p_queue text) RETURNS void
    LANGUAGE plpgsql
    AS $_$
BEGIN
    IF p_queue IS NULL OR p_queue !~ '^[a-z0-9_]{1,40}$' THEN
        RAISE EXCEPTION 'invalid queue name %: must match ^[a-z0-9_]{1,40}$', quote_nullable(p_queue)
            USING ERRCODE = '22023';
    END IF;
    IF NOT tasker._queue_exists(p_queue) THEN
        PERFORM pgmq."create"(p_queue::text);
    END IF;
    INSERT INTO tasker.queues (name) VALUES (p_queue) ON CONFLICT (name) DO NOTHING;
END;
$_$;


--
-- Name: _fail_running(bigint, jsonb, boolean, double precision, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._fail_running(p_step_id bigint, p_error jsonb, p_retryable boolean, p_retry_after_seconds double precision, p_reason text) RETURNS TABLE(status text, next_attempt_at timestamp with time zone)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    s          tasker.steps%ROWTYPE;
    v_attempt  integer;
    v_delay_ms double precision;
    v_at       timestamptz;
    v_msg      bigint;
    v_now      timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO s FROM tasker.steps AS x WHERE x.id = p_step_id;
    v_attempt := s.attempts - s.retry_base;

    IF p_retryable AND v_attempt < s.max_attempts THEN
        IF p_retry_after_seconds IS NOT NULL THEN
            v_delay_ms := least(greatest(p_retry_after_seconds, 0) * 1000, 31536000000.0);
        ELSE
            v_delay_ms := least(s.backoff_max_ms::double precision,
                                s.backoff_base_ms * power(2::double precision, least(greatest(v_attempt - 1, 0), 40)));
            v_delay_ms := v_delay_ms * (1 + s.backoff_jitter * (2 * random() - 1));
            v_delay_ms := least(greatest(v_delay_ms, 0), s.backoff_max_ms);
        END IF;
        v_delay_ms := round(v_delay_ms);
        v_at := v_now + v_delay_ms * interval '1 millisecond';
        v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1], v_at))[1];
        PERFORM tasker._delete_messages(s.queue, ARRAY[s.msg_id]);
        UPDATE tasker.steps AS x
        SET state = 'retrying', last_error = p_error, msg_id = v_msg, next_attempt_at = v_at,
            lease_expires_at = NULL, updated_at = clock_timestamp()
        WHERE x.id = s.id;
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason,
                                             metadata, at)
        VALUES (s.task_id, s.id, 'running', 'retrying', s.attempts, s.worker_id, p_reason,
                jsonb_build_object('error', p_error, 'delay_ms', v_delay_ms::bigint), v_now);
        PERFORM pg_notify('tasker_task', s.task_id::text);
        RETURN QUERY SELECT 'retrying'::text, v_at;
        RETURN;
    END IF;

    UPDATE tasker.steps AS x
    SET state = 'failed', last_error = p_error, finished_at = clock_timestamp(), lease_expires_at = NULL,
        next_attempt_at = NULL, updated_at = clock_timestamp()
    WHERE x.id = s.id;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason, metadata)
    VALUES (s.task_id, s.id, 'running', 'failed', s.attempts, s.worker_id,
            CASE WHEN p_retryable THEN p_reason || ' (attempts exhausted)' ELSE p_reason END,
            jsonb_build_object('error', p_error));
    PERFORM tasker._delete_messages(s.queue, ARRAY[s.msg_id]);
    PERFORM tasker._stop_task(s.task_id, 'failed', s.id, format('step %s failed', s.name));
    RETURN QUERY SELECT 'failed'::text, NULL::timestamptz;
END;
$$;


--
-- Name: _finish_step_manually(bigint, text, text, jsonb, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._finish_step_manually(p_task_id bigint, p_step_name text, p_target text, p_result jsonb, p_reason text) RETURNS TABLE(status text, detail text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_task_state text;
    s            tasker.steps%ROWTYPE;
BEGIN
    SELECT t.state INTO v_task_state FROM tasker.tasks AS t WHERE t.id = p_task_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'task_not_found'::text, format('task %s not found', p_task_id);
        RETURN;
    END IF;
    SELECT * INTO s FROM tasker.steps AS x WHERE x.task_id = p_task_id AND x.name = p_step_name;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'step_not_found'::text, format('task %s has no step %s', p_task_id,
                                                          quote_nullable(p_step_name));
        RETURN;
    END IF;
    IF s.state = p_target THEN
        RETURN QUERY SELECT 'noop'::text, format('step %s is already %s', s.name, s.state);
        RETURN;
    END IF;
    IF s.state IN ('succeeded', 'resolved') THEN
        RETURN QUERY SELECT 'invalid_transition'::text, format('step %s is already %s', s.name, s.state);
        RETURN;
    END IF;
    IF v_task_state = 'cancelled' THEN
        RETURN QUERY SELECT 'invalid_transition'::text, format('task %s is cancelled', p_task_id);
        RETURN;
    END IF;

    IF s.state IN ('enqueued', 'running', 'retrying') THEN
        PERFORM tasker._delete_messages(s.queue, ARRAY[s.msg_id]);
    END IF;
    UPDATE tasker.steps AS x
    SET state = p_target, result = CASE WHEN p_target = 'succeeded' THEN p_result ELSE x.result END,
        finished_at = clock_timestamp(), lease_expires_at = NULL, next_attempt_at = NULL,
        updated_at = clock_timestamp()
    WHERE x.id = s.id;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason, metadata)
    VALUES (s.task_id, s.id, s.state, p_target, s.attempts, p_reason, jsonb_build_object('manual', true));

    PERFORM tasker._release_children(ARRAY[s.id], v_task_state IN ('pending', 'running'));
    IF s.state IN ('pending', 'enqueued', 'running', 'retrying') THEN
        PERFORM tasker._count_finished(ARRAY[p_task_id]);
    END IF;
    IF v_task_state = 'failed' THEN
        PERFORM tasker._reopen_task(p_task_id, format('step %s %s manually', s.name, p_target));
    END IF;
    PERFORM pg_notify('tasker_task', p_task_id::text);
    RETURN QUERY SELECT 'ok'::text, format('step %s %s', s.name, p_target);
END;
$$;


--
-- Name: _history_delete_guard(); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._history_delete_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows AS o JOIN tasker.tasks AS t ON t.id = o.task_id) THEN
        RAISE EXCEPTION 'tasker.% is append-only: rows of an existing task cannot be deleted', TG_TABLE_NAME
            USING ERRCODE = '55000', HINT = 'history is deleted together with its task';
    END IF;
    RETURN NULL;
END;
$$;


--
-- Name: _history_no_change(); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._history_no_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'tasker.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = '55000', HINT = 'history is deleted together with its task';
END;
$$;


--
-- Name: _lock_tasks(bigint[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._lock_tasks(p_task_ids bigint[]) RETURNS bigint[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg(l.id) INTO v_ids
    FROM (SELECT t.id FROM tasker.tasks AS t WHERE t.id = ANY (p_task_ids) ORDER BY t.id FOR NO KEY UPDATE OF t) AS l;
    RETURN v_ids;
END;
$$;


--
-- Name: _message_exists(text, bigint); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._message_exists(p_queue text, p_msg_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $_$
DECLARE
    v_found boolean;
BEGIN
    IF p_msg_id IS NULL OR NOT tasker._queue_exists(p_queue) THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgmq.%I WHERE msg_id = $1)', 'q_' || p_queue)
        INTO v_found USING p_msg_id;
    RETURN v_found;
END;
$_$;


--
-- Name: _message_step_id(jsonb); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._message_step_id(message jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $_$
    SELECT CASE WHEN jsonb_typeof(message -> 'step_id') = 'number' AND (message ->> 'step_id') ~ '^[0-9]{1,18}$'
                THEN (message ->> 'step_id')::bigint END
$_$;


--
-- Name: _new_lease(bigint); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._new_lease(step_id bigint) RETURNS uuid
    LANGUAGE sql PARALLEL SAFE
    AS $$
    SELECT encode(int8send(step_id) || substr(uuid_send(gen_random_uuid()), 9, 8), 'hex')::uuid
$$;


--
-- Name: _queue_exists(text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._queue_exists(queue text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT to_regclass(format('pgmq.%I', 'q_' || queue)) IS NOT NULL
$$;


--
-- Name: _release_children(bigint[], boolean); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._release_children(p_step_ids bigint[], p_enqueue boolean) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_children bigint[];
    v_ready    bigint[];
BEGIN
    v_children := ARRAY(SELECT DISTINCT e.child_id FROM tasker.step_edges AS e WHERE e.parent_id = ANY (p_step_ids));
    IF cardinality(v_children) = 0 THEN
        RETURN;
    END IF;
    WITH u AS (
        UPDATE tasker.steps AS c
        SET remaining_parents = c.remaining_parents
                                - (SELECT count(*) FROM tasker.step_edges AS e
                                   WHERE e.child_id = c.id AND e.parent_id = ANY (p_step_ids))::integer,
            updated_at = clock_timestamp()
        WHERE c.id = ANY (v_children)
        RETURNING c.id, c.state, c.remaining_parents
    )
    SELECT array_agg(u.id) FILTER (WHERE u.remaining_parents = 0 AND u.state = 'pending') INTO v_ready FROM u;
    IF p_enqueue AND v_ready IS NOT NULL THEN
        PERFORM tasker._enqueue(v_ready, 'dependencies finished');
    END IF;
END;
$$;


--
-- Name: _reopen_task(bigint, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._reopen_task(p_task_id bigint, p_reason text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ready      bigint[];
    v_unfinished integer;
    v_to         text;
BEGIN
    IF EXISTS (SELECT 1 FROM tasker.steps AS s WHERE s.task_id = p_task_id AND s.state = 'failed') THEN
        RETURN;
    END IF;

    WITH r AS (
        SELECT s.id, s.state,
               (SELECT count(*) FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                WHERE e.child_id = s.id AND p.state NOT IN ('succeeded', 'resolved'))::integer AS remaining
        FROM tasker.steps AS s
        WHERE s.task_id = p_task_id AND s.state IN ('skipped', 'cancelled')
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'pending', remaining_parents = r.remaining, retry_base = s.attempts, finished_at = NULL,
            updated_at = clock_timestamp()
        FROM r WHERE s.id = r.id
        RETURNING s.id, s.task_id, s.attempts, r.state AS from_state, r.remaining
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT u.task_id, u.id, u.from_state, 'pending', u.attempts, p_reason FROM u
    )
    SELECT array_agg(u.id) FILTER (WHERE u.remaining = 0) INTO v_ready FROM u;

    SELECT count(*) INTO v_unfinished FROM tasker.steps AS s
    WHERE s.task_id = p_task_id AND s.state IN ('pending', 'enqueued', 'running', 'retrying');
    v_to := CASE WHEN v_unfinished = 0 THEN 'succeeded' ELSE 'running' END;

    UPDATE tasker.tasks AS t
    SET state = v_to, unfinished_steps = v_unfinished,
        completed_at = CASE WHEN v_to = 'succeeded' THEN clock_timestamp() END,
        expires_at = CASE WHEN v_to = 'succeeded' THEN clock_timestamp() + t.retention END,
        started_at = coalesce(t.started_at, clock_timestamp()), updated_at = clock_timestamp()
    WHERE t.id = p_task_id;
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
    VALUES (p_task_id, 'failed', v_to, p_reason);

    IF v_ready IS NOT NULL THEN
        PERFORM tasker._enqueue(v_ready, 'task resumed');
    END IF;
END;
$$;


--
-- Name: _restore_messages(bigint[], bigint[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._restore_messages(p_step_ids bigint[], p_deleted bigint[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    s     tasker.steps%ROWTYPE;
    v_msg bigint;
BEGIN
    IF p_deleted IS NULL OR cardinality(p_deleted) = 0 THEN
        RETURN;
    END IF;
    FOR s IN SELECT * FROM tasker.steps AS x
             WHERE x.id = ANY (p_step_ids) AND x.msg_id = ANY (p_deleted)
               AND x.state IN ('running', 'enqueued', 'retrying') LOOP
        v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1],
                               CASE s.state WHEN 'running' THEN s.lease_expires_at
                                            WHEN 'retrying' THEN s.next_attempt_at END))[1];
        UPDATE tasker.steps AS x SET msg_id = v_msg WHERE x.id = s.id;
    END LOOP;
END;
$$;


--
-- Name: _send(text, bigint[], bigint[], integer[], timestamp with time zone); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._send(p_queue text, p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[], p_visible_at timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS bigint[]
    LANGUAGE plpgsql
    AS $_$
DECLARE
    v_msgs jsonb[];
    v_ids  bigint[];
BEGIN
    SELECT array_agg(jsonb_build_object('task_id', m.task_id, 'step_id', m.step_id, 'attempt', m.attempt)
                     ORDER BY m.ord)
    INTO v_msgs
    FROM unnest(p_task_ids, p_step_ids, p_attempts) WITH ORDINALITY AS m (task_id, step_id, attempt, ord);
    IF v_msgs IS NULL THEN
        RETURN '{}';
    END IF;
    IF cardinality(v_msgs) = 1 THEN
        SELECT array_agg(s.id) INTO v_ids FROM pgmq.send(p_queue::text, v_msgs[1]::jsonb, 0::integer) AS s (id);
    ELSE
        SELECT array_agg(s.id ORDER BY s.id) INTO v_ids
        FROM pgmq.send_batch(p_queue::text, v_msgs::jsonb[], 0::integer) AS s (id);
    END IF;
    IF cardinality(v_ids) IS DISTINCT FROM cardinality(v_msgs) THEN
        RAISE EXCEPTION 'pgmq returned % message ids for % messages', cardinality(v_ids), cardinality(v_msgs);
    END IF;
    IF p_visible_at IS NOT NULL THEN
        -- Still ours (uncommitted): nobody else can hold these rows.
        EXECUTE format('UPDATE pgmq.%I SET vt = $1 WHERE msg_id = ANY ($2)', 'q_' || p_queue)
            USING p_visible_at, v_ids;
    END IF;
    IF p_visible_at IS NULL OR p_visible_at <= clock_timestamp() THEN
        PERFORM pg_notify('tasker_queue', p_queue);
    END IF;
    RETURN v_ids;
END;
$_$;


--
-- Name: _send_for(text[], bigint[], bigint[], integer[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._send_for(p_queues text[], p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[]) RETURNS bigint[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    r     record;
    v_out bigint[];
    v_ids bigint[];
    i     integer;
BEGIN
    IF p_queues IS NULL OR cardinality(p_queues) = 0 THEN
        RETURN '{}';
    END IF;
    IF p_queues[1] = ALL (p_queues) THEN -- one queue: the usual case
        RETURN tasker._send(p_queues[1], p_task_ids, p_step_ids, p_attempts);
    END IF;
    v_out := array_fill(NULL::bigint, ARRAY[cardinality(p_step_ids)]);
    FOR r IN SELECT m.queue, array_agg(m.ord ORDER BY m.ord) AS ords, array_agg(m.task_id ORDER BY m.ord) AS task_ids,
                    array_agg(m.step_id ORDER BY m.ord) AS step_ids, array_agg(m.attempt ORDER BY m.ord) AS attempts
             FROM unnest(p_queues, p_task_ids, p_step_ids, p_attempts) WITH ORDINALITY
                  AS m (queue, task_id, step_id, attempt, ord)
             GROUP BY m.queue ORDER BY m.queue LOOP
        v_ids := tasker._send(r.queue, r.task_ids, r.step_ids, r.attempts);
        FOR i IN 1 .. cardinality(r.ords) LOOP
            v_out[r.ords[i]] := v_ids[i];
        END LOOP;
    END LOOP;
    RETURN v_out;
END;
$$;


--
-- Name: _set_visibility(text, bigint[], timestamp with time zone[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._set_visibility(p_queue text, p_msg_ids bigint[], p_vts timestamp with time zone[]) RETURNS integer
    LANGUAGE plpgsql
    AS $_$
DECLARE
    n integer;
BEGIN
    IF p_msg_ids IS NULL OR cardinality(p_msg_ids) = 0 OR NOT tasker._queue_exists(p_queue) THEN
        RETURN 0;
    END IF;
    EXECUTE format($sql$
        UPDATE pgmq.%1$I AS q SET vt = v.vt
        FROM unnest($1::bigint[], $2::timestamptz[]) AS v (msg_id, vt)
        WHERE q.msg_id = v.msg_id
          AND q.msg_id IN (SELECT l.msg_id FROM pgmq.%1$I AS l WHERE l.msg_id = ANY ($1) FOR UPDATE SKIP LOCKED)
        $sql$, 'q_' || p_queue)
        USING p_msg_ids, p_vts;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$_$;


--
-- Name: _stop_task(bigint, text, bigint, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._stop_task(p_task_id bigint, p_target text, p_failed_step_id bigint, p_reason text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_from   text;
    v_queues text[];
    v_msgs   bigint[];
    r        record;
BEGIN
    SELECT t.state INTO v_from FROM tasker.tasks AS t WHERE t.id = p_task_id;

    WITH RECURSIVE below AS (
        SELECT e.child_id AS id FROM tasker.step_edges AS e WHERE e.parent_id = p_failed_step_id
        UNION
        SELECT e.child_id FROM tasker.step_edges AS e JOIN below AS b ON e.parent_id = b.id
    ), o AS (
        SELECT s.id, s.state, s.queue, s.msg_id
        FROM tasker.steps AS s
        WHERE s.task_id = p_task_id AND s.state IN ('pending', 'enqueued', 'running', 'retrying')
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = CASE WHEN o.state = 'pending' AND o.id IN (SELECT b.id FROM below AS b)
                         THEN 'skipped' ELSE 'cancelled' END,
            finished_at = clock_timestamp(), lease_expires_at = NULL, next_attempt_at = NULL,
            updated_at = clock_timestamp()
        FROM o WHERE s.id = o.id
        RETURNING s.id, s.task_id, s.attempts, s.state AS to_state, o.state AS from_state, o.queue, o.msg_id
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
        SELECT u.task_id, u.id, u.from_state, u.to_state, u.attempts,
               CASE WHEN u.to_state = 'skipped' THEN 'an upstream step failed' ELSE p_reason END
        FROM u
    )
    SELECT array_agg(u.queue) FILTER (WHERE u.from_state IN ('enqueued', 'running', 'retrying')),
           array_agg(u.msg_id) FILTER (WHERE u.from_state IN ('enqueued', 'running', 'retrying'))
    INTO v_queues, v_msgs
    FROM u;

    FOR r IN SELECT m.queue, array_agg(m.msg_id) AS ids FROM unnest(v_queues, v_msgs) AS m (queue, msg_id)
             GROUP BY m.queue LOOP
        PERFORM tasker._delete_messages(r.queue, r.ids);
    END LOOP;

    UPDATE tasker.tasks AS t
    SET state = p_target, unfinished_steps = 0, completed_at = clock_timestamp(),
        expires_at = clock_timestamp() + t.retention, updated_at = clock_timestamp()
    WHERE t.id = p_task_id;
    INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
    VALUES (p_task_id, v_from, p_target, p_reason);
    PERFORM pg_notify('tasker_task', p_task_id::text);
END;
$$;


--
-- Name: _unrestricted(); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker._unrestricted() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT pg_catalog.pg_has_role(session_user, n.nspowner, 'USAGE')
    FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'tasker'
$$;


--
-- Name: admit(jsonb); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.admit(spec jsonb) RETURNS TABLE(task_id bigint, created boolean)
    LANGUAGE plpgsql
    AS $_$
#variable_conflict use_column
DECLARE
    v_id      bigint;
    v_count   integer;
    v_problem text;
    v_queue   text;
    v_roots   bigint[];
BEGIN
    IF jsonb_typeof(spec -> 'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(spec -> 'steps') = 0 THEN
        RAISE EXCEPTION 'spec.steps: at least one step is required' USING ERRCODE = '22023';
    END IF;
    IF coalesce(spec ->> 'external_key', '') = '' OR length(spec ->> 'external_key') > 255 THEN
        RAISE EXCEPTION 'spec.external_key: required, at most 255 characters' USING ERRCODE = '22023';
    END IF;
    IF coalesce(spec ->> 'queue', '') !~ '^([a-z0-9_]{1,40})?$' THEN
        RAISE EXCEPTION 'spec.queue: % is not a valid queue name', quote_nullable(spec ->> 'queue')
            USING ERRCODE = '22023';
    END IF;
    v_count := jsonb_array_length(spec -> 'steps');

    -- Names, queues and references, checked before anything is written (first problem in step order).
    WITH s AS (
        SELECT x.ord - 1 AS i, x.s ->> 'name' AS name, x.s ->> 'handler' AS handler,
               coalesce(nullif(x.s ->> 'queue', ''), spec ->> 'queue') AS queue, x.s -> 'depends_on' AS deps,
               (x.s ->> 'max_attempts')::integer AS max_attempts, (x.s ->> 'backoff_base_ms')::bigint AS base_ms,
               (x.s ->> 'backoff_max_ms')::bigint AS max_ms, (x.s ->> 'backoff_jitter')::double precision AS jitter,
               (x.s ->> 'timeout_seconds')::bigint AS timeout
        FROM jsonb_array_elements(spec -> 'steps') WITH ORDINALITY AS x (s, ord)
    )
    SELECT p.msg INTO v_problem FROM (
        SELECT s.i, 1 AS k, format('spec.steps[%s].name: %s is not a valid step name', s.i,
                                   quote_nullable(s.name)) AS msg
        FROM s WHERE s.name IS NULL OR s.name !~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'
        UNION ALL
        SELECT s.i, 2, format('spec.steps[%s].name: duplicate step name %s', s.i, quote_nullable(s.name))
        FROM s WHERE (SELECT count(*) FROM s AS s2 WHERE s2.name = s.name) > 1
        UNION ALL
        SELECT s.i, 3, format('spec.steps[%s].handler: required', s.i)
        FROM s WHERE coalesce(s.handler, '') = '' OR length(s.handler) > 253
        UNION ALL
        SELECT s.i, 4, format('spec.steps[%s].queue: %s is not a valid queue name', s.i, quote_nullable(s.queue))
        FROM s WHERE s.queue IS NULL OR s.queue !~ '^[a-z0-9_]{1,40}$'
        UNION ALL
        SELECT s.i, 5, format('spec.steps[%s].retry: maxAttempts must be 1 to 1000, backoff 0 <= base <= max '
                              '<= 86400000 ms, jitter 0 to 1; timeoutSeconds >= 0', s.i)
        FROM s WHERE NOT (coalesce(s.max_attempts, 3) BETWEEN 1 AND 1000
                          AND coalesce(s.base_ms, 1000) >= 0
                          AND coalesce(s.max_ms, 300000) BETWEEN coalesce(s.base_ms, 1000) AND 86400000
                          AND coalesce(s.jitter, 0.2) BETWEEN 0 AND 1 AND coalesce(s.timeout, 0) >= 0)
        UNION ALL
        SELECT s.i, 6, format('spec.steps[%s].dependsOn: unknown step %s', s.i, quote_nullable(d.name))
        FROM s CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(s.deps, '[]')) AS d (name)
        WHERE NOT EXISTS (SELECT 1 FROM s AS s2 WHERE s2.name = d.name) OR d.name = s.name
    ) AS p ORDER BY p.i, p.k LIMIT 1;
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = '22023';
    END IF;

    INSERT INTO tasker.tasks AS t (external_key, namespace, name, queue, priority, context, retention, step_count,
                                   unfinished_steps)
    VALUES (spec ->> 'external_key', coalesce(spec ->> 'namespace', ''), coalesce(spec ->> 'name', ''),
            coalesce(spec ->> 'queue', ''), coalesce((spec ->> 'priority')::integer, 0), spec -> 'context',
            make_interval(secs => coalesce((spec ->> 'retention_seconds')::double precision, 604800)),
            v_count, v_count)
    ON CONFLICT (external_key) DO NOTHING
    RETURNING t.id INTO v_id;
    IF v_id IS NULL THEN
        SELECT t.id INTO v_id FROM tasker.tasks AS t WHERE t.external_key = spec ->> 'external_key';
        RETURN QUERY SELECT v_id, false;
        RETURN;
    END IF;

    INSERT INTO tasker.steps (task_id, name, handler, queue, inputs, max_attempts, backoff_base_ms, backoff_max_ms,
                              backoff_jitter, timeout_seconds, parent_count, remaining_parents)
    SELECT v_id, x.s ->> 'name', x.s ->> 'handler', coalesce(nullif(x.s ->> 'queue', ''), spec ->> 'queue'),
           x.s -> 'inputs', coalesce((x.s ->> 'max_attempts')::integer, 3),
           coalesce((x.s ->> 'backoff_base_ms')::integer, 1000), coalesce((x.s ->> 'backoff_max_ms')::integer, 300000),
           coalesce((x.s ->> 'backoff_jitter')::real, 0.2), coalesce((x.s ->> 'timeout_seconds')::integer, 0),
           jsonb_array_length(coalesce(x.s -> 'depends_on', '[]')),
           jsonb_array_length(coalesce(x.s -> 'depends_on', '[]'))
    FROM jsonb_array_elements(spec -> 'steps') WITH ORDINALITY AS x (s, ord)
    ORDER BY x.ord;

    INSERT INTO tasker.step_edges (task_id, parent_id, child_id)
    SELECT v_id, p.id, c.id
    FROM jsonb_array_elements(spec -> 'steps') AS x (s)
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(x.s -> 'depends_on', '[]')) AS d (name)
    JOIN tasker.steps AS c ON c.task_id = v_id AND c.name = x.s ->> 'name'
    JOIN tasker.steps AS p ON p.task_id = v_id AND p.name = d.name;

    FOR v_queue IN SELECT DISTINCT s.queue FROM tasker.steps AS s WHERE s.task_id = v_id ORDER BY 1 LOOP
        PERFORM tasker._ensure_queue(v_queue);
    END LOOP;

    SELECT array_agg(s.id) INTO v_roots FROM tasker.steps AS s WHERE s.task_id = v_id AND s.parent_count = 0;
    IF v_roots IS NULL THEN
        RAISE EXCEPTION 'spec.steps: no step without dependencies (the graph has a cycle)' USING ERRCODE = '22023';
    END IF;
    PERFORM tasker._enqueue(v_roots, 'admitted');
    PERFORM pg_notify('tasker_task', v_id::text);
    RETURN QUERY SELECT v_id, true;
END;
$_$;


--
-- Name: cancel_task(bigint, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.cancel_task(task_id bigint, reason text DEFAULT NULL::text) RETURNS TABLE(status text, detail text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_state  text;
    v_queues text[];
    v_msgs   bigint[];
BEGIN
    -- Before any lock: delete the messages of the task's live steps (see the lock order above); a message sent
    -- after this read is deleted under the lock by _stop_task.
    SELECT array_agg(s.queue), array_agg(s.msg_id) INTO v_queues, v_msgs
    FROM tasker.steps AS s
    WHERE s.task_id = cancel_task.task_id AND s.state IN ('enqueued', 'running', 'retrying');
    IF v_msgs IS NOT NULL THEN
        PERFORM tasker._delete_messages_wait(v_queues, v_msgs);
    END IF;
    SELECT t.state INTO v_state FROM tasker.tasks AS t WHERE t.id = cancel_task.task_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'task_not_found'::text, format('task %s not found', cancel_task.task_id);
        RETURN;
    END IF;
    IF v_state NOT IN ('pending', 'running') THEN
        RETURN QUERY SELECT 'noop'::text, format('task %s is already %s', cancel_task.task_id, v_state);
        RETURN;
    END IF;
    PERFORM tasker._stop_task(cancel_task.task_id, 'cancelled', NULL, coalesce(cancel_task.reason, 'cancelled'));
    RETURN QUERY SELECT 'ok'::text, format('task %s cancelled', cancel_task.task_id);
END;
$$;


--
-- Name: claim(text, integer, integer, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text DEFAULT NULL::text) RETURNS TABLE(step_id bigint, task_id bigint, step_name text, handler text, inputs jsonb, task_context jsonb, dependency_results jsonb, attempt integer, lease uuid, timeout_seconds integer, lease_expires_at timestamp with time zone)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM tasker._authorize_queues(ARRAY[queue_name]);
                     RETURN QUERY SELECT * FROM tasker_internal.claim(claim.queue_name, claim.max_messages, claim.visibility_timeout_seconds, claim.worker_id);
                 END;
                 $$;


--
-- Name: FUNCTION claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text) IS 'Worker protocol (checks queue grants, then runs tasker_internal.claim).';


--
-- Name: complete(uuid, jsonb); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.complete(lease uuid, result jsonb DEFAULT NULL::jsonb) RETURNS TABLE(ok boolean, status text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM tasker._authorize_leases(ARRAY[lease]);
                     RETURN QUERY SELECT * FROM tasker_internal.complete(complete.lease, complete.result);
                 END;
                 $$;


--
-- Name: FUNCTION complete(lease uuid, result jsonb); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.complete(lease uuid, result jsonb) IS 'Worker protocol (checks queue grants, then runs tasker_internal.complete).';


--
-- Name: complete_many(uuid[], jsonb[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.complete_many(leases uuid[], results jsonb[]) RETURNS TABLE(lease uuid, ok boolean, status text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM tasker._authorize_leases(leases);
                     RETURN QUERY SELECT * FROM tasker_internal.complete_many(complete_many.leases, complete_many.results);
                 END;
                 $$;


--
-- Name: FUNCTION complete_many(leases uuid[], results jsonb[]); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.complete_many(leases uuid[], results jsonb[]) IS 'Worker protocol (checks queue grants, then runs tasker_internal.complete_many).';


--
-- Name: complete_step(bigint, text, jsonb, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.complete_step(task_id bigint, step_name text, result jsonb, reason text DEFAULT NULL::text) RETURNS TABLE(status text, detail text)
    LANGUAGE sql
    AS $$
    SELECT r.status, r.detail
    FROM tasker._finish_step_manually(complete_step.task_id, complete_step.step_name, 'succeeded',
                                      complete_step.result, coalesce(complete_step.reason, 'completed manually'))
         AS r
$$;


--
-- Name: fail(uuid, jsonb, boolean, double precision); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.fail(lease uuid, error jsonb, retryable boolean DEFAULT true, retry_after_seconds double precision DEFAULT NULL::double precision) RETURNS TABLE(ok boolean, status text, next_attempt_at timestamp with time zone)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM tasker._authorize_leases(ARRAY[lease]);
                     RETURN QUERY SELECT * FROM tasker_internal.fail(fail.lease, fail.error, fail.retryable, fail.retry_after_seconds);
                 END;
                 $$;


--
-- Name: FUNCTION fail(lease uuid, error jsonb, retryable boolean, retry_after_seconds double precision); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.fail(lease uuid, error jsonb, retryable boolean, retry_after_seconds double precision) IS 'Worker protocol (checks queue grants, then runs tasker_internal.fail).';


--
-- Name: grant_worker(name, text[]); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.grant_worker(role name, queues text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
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
$$;


--
-- Name: heartbeat(uuid, integer); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.heartbeat(lease uuid, extend_seconds integer) RETURNS TABLE(ok boolean, cancelled boolean, lease_expires_at timestamp with time zone)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM tasker._authorize_leases(ARRAY[lease]);
                     RETURN QUERY SELECT * FROM tasker_internal.heartbeat(heartbeat.lease, heartbeat.extend_seconds);
                 END;
                 $$;


--
-- Name: FUNCTION heartbeat(lease uuid, extend_seconds integer); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.heartbeat(lease uuid, extend_seconds integer) IS 'Worker protocol (checks queue grants, then runs tasker_internal.heartbeat).';


--
-- Name: lease_step_id(uuid); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.lease_step_id(lease uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
    SELECT ('x' || substr(encode(uuid_send(lease), 'hex'), 1, 16))::bit(64)::bigint
$$;


--
-- Name: release(uuid); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.release(lease uuid) RETURNS TABLE(ok boolean, status text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM tasker._authorize_leases(ARRAY[lease]);
                     RETURN QUERY SELECT * FROM tasker_internal.release(release.lease);
                 END;
                 $$;


--
-- Name: FUNCTION release(lease uuid); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.release(lease uuid) IS 'Worker protocol (checks queue grants, then runs tasker_internal.release).';


--
-- Name: resolve_step(bigint, text, text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.resolve_step(task_id bigint, step_name text, reason text DEFAULT NULL::text) RETURNS TABLE(status text, detail text)
    LANGUAGE sql
    AS $$
    SELECT r.status, r.detail
    FROM tasker._finish_step_manually(resolve_step.task_id, resolve_step.step_name, 'resolved', NULL,
                                      coalesce(resolve_step.reason, 'resolved manually'))
         AS r
$$;


--
-- Name: retry_step(bigint, text, text, jsonb); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.retry_step(task_id bigint, step_name text, reason text DEFAULT NULL::text, inputs jsonb DEFAULT NULL::jsonb) RETURNS TABLE(status text, detail text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_task_state text;
    s            tasker.steps%ROWTYPE;
BEGIN
    SELECT t.state INTO v_task_state FROM tasker.tasks AS t WHERE t.id = retry_step.task_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'task_not_found'::text, format('task %s not found', retry_step.task_id);
        RETURN;
    END IF;
    SELECT * INTO s FROM tasker.steps AS x WHERE x.task_id = retry_step.task_id AND x.name = retry_step.step_name;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'step_not_found'::text, format('task %s has no step %s', retry_step.task_id,
                                                          quote_nullable(retry_step.step_name));
        RETURN;
    END IF;
    IF v_task_state = 'cancelled' THEN
        RETURN QUERY SELECT 'invalid_transition'::text, format('task %s is cancelled', retry_step.task_id);
        RETURN;
    END IF;
    IF s.state IN ('enqueued', 'running', 'retrying') THEN
        RETURN QUERY SELECT 'noop'::text, format('step %s is already %s', s.name, s.state);
        RETURN;
    END IF;
    IF s.state <> 'failed' THEN
        RETURN QUERY SELECT 'invalid_transition'::text,
                            format('step %s is %s: only a failed step can be retried', s.name, s.state);
        RETURN;
    END IF;

    UPDATE tasker.steps AS x
    SET retry_base = x.attempts,
        inputs = CASE WHEN retry_step.inputs IS NULL THEN x.inputs ELSE retry_step.inputs END
    WHERE x.id = s.id;
    PERFORM tasker._enqueue(ARRAY[s.id], coalesce(retry_step.reason, 'retried manually')
        || CASE WHEN retry_step.inputs IS NULL THEN '' ELSE ' with new inputs' END);
    IF v_task_state = 'failed' THEN
        PERFORM tasker._reopen_task(retry_step.task_id, format('step %s retried manually', s.name));
    ELSE
        UPDATE tasker.tasks AS t SET unfinished_steps = t.unfinished_steps + 1, updated_at = clock_timestamp()
        WHERE t.id = retry_step.task_id;
    END IF;
    PERFORM pg_notify('tasker_task', retry_step.task_id::text);
    RETURN QUERY SELECT 'ok'::text, format('step %s enqueued', s.name);
END;
$$;


--
-- Name: revoke_worker(name); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.revoke_worker(role name) RETURNS void
    LANGUAGE plpgsql
    AS $$
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
$$;


--
-- Name: upkeep(integer, integer, integer, integer, timestamp with time zone); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.upkeep(batch_size integer DEFAULT 500, lease_grace_seconds integer DEFAULT 30, archive_retention_seconds integer DEFAULT 604800, worker_ttl_seconds integer DEFAULT 86400, as_of timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(timed_out integer, repaired integer, deleted_tasks integer, archive_deleted bigint, workers_deleted integer)
    LANGUAGE plpgsql
    AS $_$
#variable_conflict use_column
DECLARE
    v_now       timestamptz := coalesce(upkeep.as_of, clock_timestamp());
    v_ids       bigint[];
    v_tasks     bigint[];
    v_id        bigint;
    v_timed_out integer := 0;
    v_repaired  integer := 0;
    v_deleted   integer := 0;
    v_archive   bigint := 0;
    v_workers   integer := 0;
    v_n         bigint;
    v_queue     text;
    s           tasker.steps%ROWTYPE;
    v_msg       bigint;
BEGIN
    IF upkeep.batch_size IS NULL OR upkeep.batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = '22023';
    END IF;

    -- 1. Timeouts.
    SELECT array_agg(x.id), array_agg(DISTINCT x.task_id) INTO v_ids, v_tasks
    FROM (SELECT s.id, s.task_id
          FROM tasker.tasks AS t JOIN tasker.steps AS s ON s.task_id = t.id
          WHERE t.completed_at IS NULL AND s.state = 'running' AND s.timeout_seconds > 0
            AND s.started_at + s.timeout_seconds * interval '1 second' <= v_now
          ORDER BY s.started_at LIMIT upkeep.batch_size) AS x;
    IF v_ids IS NOT NULL THEN
        PERFORM tasker._lock_tasks(v_tasks);
        FOR s IN SELECT * FROM tasker.steps AS x WHERE x.id = ANY (v_ids) ORDER BY x.id LOOP
            -- Re-read: the failure of an earlier step may have cancelled this one.
            IF EXISTS (SELECT 1 FROM tasker.steps AS x
                       WHERE x.id = s.id AND x.state = 'running'
                         AND x.started_at + x.timeout_seconds * interval '1 second' <= v_now) THEN
                PERFORM tasker._fail_running(s.id,
                    jsonb_build_object('message', format('step timed out after %s seconds', s.timeout_seconds),
                                       'timeout', true),
                    true, NULL, 'timed out');
                v_timed_out := v_timed_out + 1;
            END IF;
        END LOOP;
    END IF;

    -- 2. Steps whose message is gone.
    FOR v_queue IN SELECT q.name FROM tasker.queues AS q ORDER BY q.name LOOP
        EXIT WHEN v_repaired >= upkeep.batch_size;
        CONTINUE WHEN NOT tasker._queue_exists(v_queue);
        EXECUTE format($sql$
            SELECT array_agg(x.id), array_agg(DISTINCT x.task_id)
            FROM (SELECT s.id, s.task_id
                  FROM tasker.tasks AS t JOIN tasker.steps AS s ON s.task_id = t.id
                  WHERE t.completed_at IS NULL AND s.queue = $1
                    AND ((s.state = 'running' AND s.lease_expires_at < $2)
                         OR (s.state IN ('enqueued', 'retrying') AND s.updated_at < $2
                             AND coalesce(s.next_attempt_at, '-infinity') < $2))
                    AND NOT EXISTS (SELECT 1 FROM pgmq.%I AS m WHERE m.msg_id = s.msg_id)
                  LIMIT $3) AS x
            $sql$, 'q_' || v_queue)
            INTO v_ids, v_tasks
            USING v_queue, v_now - upkeep.lease_grace_seconds * interval '1 second',
                  upkeep.batch_size - v_repaired;
        CONTINUE WHEN v_ids IS NULL;
        PERFORM tasker._lock_tasks(v_tasks);
        FOR s IN SELECT * FROM tasker.steps AS x WHERE x.id = ANY (v_ids) ORDER BY x.id LOOP
            CONTINUE WHEN s.state NOT IN ('running', 'enqueued', 'retrying')
                       OR tasker._message_exists(s.queue, s.msg_id);
            v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1]))[1];
            UPDATE tasker.steps AS x SET msg_id = v_msg, next_attempt_at = NULL, updated_at = clock_timestamp()
            WHERE x.id = s.id;
            v_repaired := v_repaired + 1;
        END LOOP;
    END LOOP;

    -- 3. Retention. Tasks first, then their history (the history guard allows deleting rows of deleted tasks).
    WITH d AS (
        DELETE FROM tasker.tasks AS t
        WHERE t.id IN (SELECT x.id FROM tasker.tasks AS x
                       WHERE x.expires_at <= v_now ORDER BY x.expires_at LIMIT upkeep.batch_size
                       FOR UPDATE SKIP LOCKED)
        RETURNING t.id
    )
    SELECT array_agg(d.id) INTO v_ids FROM d;
    IF v_ids IS NOT NULL THEN
        v_deleted := cardinality(v_ids);
        DELETE FROM tasker.step_transitions AS x WHERE x.task_id = ANY (v_ids);
        DELETE FROM tasker.task_transitions AS x WHERE x.task_id = ANY (v_ids);
    END IF;

    -- 4. Archives of tasker's queues (tasker deletes messages rather than archiving them, so these are normally
    --    empty; someone may archive by hand).
    FOR v_queue IN SELECT q.name FROM tasker.queues AS q ORDER BY q.name LOOP
        CONTINUE WHEN to_regclass(format('pgmq.%I', 'a_' || v_queue)) IS NULL;
        EXECUTE format($sql$
            DELETE FROM pgmq.%1$I AS a
            WHERE a.msg_id IN (SELECT x.msg_id FROM pgmq.%1$I AS x WHERE x.archived_at < $1
                               ORDER BY x.archived_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            $sql$, 'a_' || v_queue)
            USING v_now - upkeep.archive_retention_seconds * interval '1 second', upkeep.batch_size;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_archive := v_archive + v_n;
    END LOOP;

    -- 5. Workers that stopped reporting.
    DELETE FROM tasker.workers AS w
    WHERE w.last_heartbeat_at < v_now - upkeep.worker_ttl_seconds * interval '1 second';
    GET DIAGNOSTICS v_workers = ROW_COUNT;

    RETURN QUERY SELECT v_timed_out, v_repaired, v_deleted, v_archive, v_workers;
END;
$_$;


--
-- Name: worker_heartbeat(text, text[], integer, integer, text, jsonb); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text DEFAULT ''::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM tasker._authorize_queues(queues);
                     PERFORM tasker_internal.worker_heartbeat(worker_heartbeat.worker_id, worker_heartbeat.queues, worker_heartbeat.slots, worker_heartbeat.in_flight, worker_heartbeat.hostname, worker_heartbeat.metadata);
                 END;
                 $$;


--
-- Name: FUNCTION worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text, metadata jsonb); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text, metadata jsonb) IS 'Worker protocol (checks queue grants, then runs tasker_internal.worker_heartbeat).';


--
-- Name: worker_stopped(text); Type: FUNCTION; Schema: tasker; Owner: -
--

CREATE FUNCTION tasker.worker_stopped(worker_id text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'tasker', 'pgmq', 'pg_temp'
    AS $$
                 BEGIN
                     PERFORM NULL;
                     PERFORM tasker_internal.worker_stopped(worker_stopped.worker_id);
                 END;
                 $$;


--
-- Name: FUNCTION worker_stopped(worker_id text); Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON FUNCTION tasker.worker_stopped(worker_id text) IS 'Worker protocol (checks queue grants, then runs tasker_internal.worker_stopped).';


--
-- Name: claim(text, integer, integer, text); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text DEFAULT NULL::text) RETURNS TABLE(step_id bigint, task_id bigint, step_name text, handler text, inputs jsonb, task_context jsonb, dependency_results jsonb, attempt integer, lease uuid, timeout_seconds integer, lease_expires_at timestamp with time zone)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    AS $_$
#variable_conflict use_column
DECLARE
    v_msg_ids    bigint[];
    v_step_ids   bigint[];
    v_vts        timestamptz[];
    v_tasks      bigint[];
    v_claim      bigint[];
    v_claim_vts  timestamptz[];
    v_claim_from text[];
    v_expired    bigint[];
    v_drop       bigint[];
    v_keep       bigint[];
    v_keep_vts   timestamptz[];
    v_id         bigint;
    v_pending    boolean;
    v_started    bigint[];
BEGIN
    IF claim.queue_name IS NULL OR claim.queue_name !~ '^[a-z0-9_]{1,40}$' THEN
        RAISE EXCEPTION 'invalid queue name %: must match ^[a-z0-9_]{1,40}$', quote_nullable(claim.queue_name)
            USING ERRCODE = '22023';
    END IF;
    IF claim.max_messages IS NULL OR claim.max_messages NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_messages must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    IF claim.visibility_timeout_seconds IS NULL OR claim.visibility_timeout_seconds < 1 THEN
        RAISE EXCEPTION 'visibility_timeout_seconds must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF NOT tasker._queue_exists(claim.queue_name) THEN
        RETURN; -- no task has used this queue yet
    END IF;

    SELECT array_agg(r.msg_id ORDER BY r.msg_id), array_agg(tasker._message_step_id(r.message) ORDER BY r.msg_id),
           array_agg(r.vt ORDER BY r.msg_id)
    INTO v_msg_ids, v_step_ids, v_vts
    FROM pgmq.read(claim.queue_name::text, claim.visibility_timeout_seconds::integer,
                   claim.max_messages::integer) AS r;
    IF v_msg_ids IS NULL THEN
        RETURN;
    END IF;

    SELECT array_agg(l.id), bool_or(l.state = 'pending') INTO v_tasks, v_pending
    FROM (SELECT t.id, t.state FROM tasker.tasks AS t
          WHERE t.id = ANY (ARRAY(SELECT s.task_id FROM tasker.steps AS s WHERE s.id = ANY (v_step_ids)))
          ORDER BY t.id FOR NO KEY UPDATE OF t) AS l;

    -- Classify each message now that its task is locked (so step states cannot change under us).
    SELECT array_agg(c.step_id ORDER BY c.msg_id) FILTER (WHERE c.action = 'claim'),
           array_agg(c.vt ORDER BY c.msg_id) FILTER (WHERE c.action = 'claim'),
           array_agg(c.state ORDER BY c.msg_id) FILTER (WHERE c.action = 'claim'),
           array_agg(c.step_id ORDER BY c.msg_id) FILTER (WHERE c.action = 'expired'),
           array_agg(c.msg_id) FILTER (WHERE c.action = 'drop'),
           array_agg(c.msg_id) FILTER (WHERE c.action = 'keep'),
           array_agg(c.lease_expires_at) FILTER (WHERE c.action = 'keep'),
           array_agg(DISTINCT c.task_id) FILTER (WHERE c.action = 'claim' AND c.task_state = 'pending')
    INTO v_claim, v_claim_vts, v_claim_from, v_expired, v_drop, v_keep, v_keep_vts, v_started
    FROM (
        SELECT m.msg_id, m.step_id, m.vt, s.state, s.lease_expires_at, s.task_id, t.state AS task_state,
               CASE
                   WHEN s.id IS NULL OR s.msg_id IS DISTINCT FROM m.msg_id
                        OR t.state NOT IN ('pending', 'running') THEN 'drop'
                   WHEN s.state IN ('enqueued', 'retrying') THEN 'claim'
                   WHEN s.state = 'running' AND s.lease_expires_at <= clock_timestamp() THEN
                       CASE WHEN s.attempts - s.retry_base >= s.max_attempts THEN 'expired' ELSE 'claim' END
                   -- Visible although the lease was extended (a heartbeat could not re-time the message because
                   -- someone held it): put the visibility back and leave the step to its holder.
                   WHEN s.state = 'running' THEN 'keep'
                   ELSE 'drop'
               END AS action
        FROM unnest(v_msg_ids, v_step_ids, v_vts) AS m (msg_id, step_id, vt)
        LEFT JOIN tasker.steps AS s ON s.id = m.step_id
        LEFT JOIN tasker.tasks AS t ON t.id = s.task_id
    ) AS c;

    IF v_drop IS NOT NULL THEN
        PERFORM tasker._delete_messages(claim.queue_name, v_drop); -- ours: no wait
    END IF;
    IF v_keep IS NOT NULL THEN
        PERFORM tasker._set_visibility(claim.queue_name, v_keep, v_keep_vts);
    END IF;
    -- The last attempt's lease expired: the worker died (or hung) on it every time. Fail like a retryable error.
    IF v_expired IS NOT NULL THEN
        FOREACH v_id IN ARRAY v_expired LOOP
            IF (SELECT s.state FROM tasker.steps AS s WHERE s.id = v_id) = 'running' THEN
                PERFORM tasker._fail_running(v_id,
                    jsonb_build_object('message', 'lease expired: the worker stopped reporting'), true, NULL,
                    'lease expired');
            END IF;
        END LOOP;
    END IF;
    IF v_claim IS NULL THEN
        RETURN;
    END IF;

    IF v_started IS NOT NULL THEN
        WITH started AS (
            UPDATE tasker.tasks AS t
            SET state = 'running', started_at = clock_timestamp(), updated_at = clock_timestamp()
            WHERE t.id = ANY (v_started) AND t.state = 'pending'
            RETURNING t.id
        )
        INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
        SELECT started.id, 'pending', 'running', 'first step claimed' FROM started;
    END IF;

    PERFORM pg_notify('tasker_task', x.id::text) FROM unnest(v_tasks) AS x (id);

    RETURN QUERY
    WITH c AS MATERIALIZED (
        SELECT x.id, x.vt, x.from_state, x.ord
        FROM unnest(v_claim, v_claim_vts, v_claim_from) WITH ORDINALITY AS x (id, vt, from_state, ord)
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'running', lease = tasker._new_lease(s.id), attempts = s.attempts + 1,
            lease_expires_at = c.vt, worker_id = claim.worker_id, started_at = clock_timestamp(),
            next_attempt_at = NULL, updated_at = clock_timestamp()
        FROM c
        WHERE s.id = c.id
          AND s.state = c.from_state -- a failure above may have stopped it
        RETURNING s.id, s.task_id, s.name, s.handler, s.inputs, s.attempts, s.lease, s.timeout_seconds,
                  s.lease_expires_at, c.from_state, c.ord
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason)
        SELECT u.task_id, u.id, u.from_state, 'running', u.attempts, claim.worker_id,
               CASE WHEN u.from_state = 'running' THEN 'lease expired' ELSE 'claimed' END
        FROM u
    )
    SELECT u.id, u.task_id, u.name, u.handler, u.inputs, t.context,
           coalesce((SELECT jsonb_object_agg(p.name, p.result)
                     FROM tasker.step_edges AS e JOIN tasker.steps AS p ON p.id = e.parent_id
                     WHERE e.child_id = u.id), '{}'::jsonb),
           u.attempts, u.lease, u.timeout_seconds, u.lease_expires_at
    FROM u JOIN tasker.tasks AS t ON t.id = u.task_id
    ORDER BY u.ord;
END;
$_$;


--
-- Name: complete(uuid, jsonb); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.complete(lease uuid, result jsonb DEFAULT NULL::jsonb) RETURNS TABLE(ok boolean, status text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY SELECT c.ok, c.status
                 FROM tasker.complete_many(ARRAY[complete.lease]::uuid[], ARRAY[complete.result]::jsonb[]) AS c;
END;
$$;


--
-- Name: complete_many(uuid[], jsonb[]); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.complete_many(leases uuid[], results jsonb[]) RETURNS TABLE(lease uuid, ok boolean, status text)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    AS $$
#variable_conflict use_column
DECLARE
    v_tasks      bigint[];
    v_queues     text[];
    v_msgs       bigint[];
    v_steps      bigint[];
    v_deleted    bigint[];
    v_ids        bigint[];
    v_done_tasks bigint[];
    v_leases     uuid[];
    v_children   bigint[];
    v_counts     integer[];
    v_ready      bigint[];
    v_rqueues    text[];
    v_rtasks     bigint[];
    v_rattempts  integer[];
    v_rmsgs      bigint[];
    r            record;
BEGIN
    IF results IS NOT NULL AND cardinality(results) <> cardinality(leases) THEN
        RAISE EXCEPTION 'results has % elements, leases %', cardinality(results), cardinality(leases)
            USING ERRCODE = '22023';
    END IF;
    IF leases IS NULL OR cardinality(leases) = 0 THEN
        RETURN;
    END IF;
    IF results IS NULL THEN
        results := array_fill(NULL::jsonb, ARRAY[cardinality(leases)]);
    END IF;

    -- 1. Before any lock: delete the messages of the steps these leases hold (see the lock order above).
    SELECT array_agg(s.task_id), array_agg(s.queue), array_agg(s.msg_id), array_agg(s.id)
    INTO v_tasks, v_queues, v_msgs, v_steps
    FROM unnest(leases) AS l (lease)
    JOIN tasker.steps AS s ON s.id = tasker.lease_step_id(l.lease) AND s.lease = l.lease
    WHERE s.state = 'running';
    IF v_steps IS NULL THEN
        RETURN QUERY SELECT x.lease, false, 'stale_lease'::text
                     FROM unnest(leases) WITH ORDINALITY AS x (lease, ord) ORDER BY x.ord;
        RETURN;
    END IF;
    IF v_queues[1] = ALL (v_queues) THEN
        v_deleted := ARRAY(SELECT d.id FROM pgmq.delete(v_queues[1]::text, v_msgs::bigint[]) AS d (id));
    ELSE
        v_deleted := tasker._delete_messages_wait(v_queues, v_msgs);
    END IF;

    -- 2. Lock the tasks, then finish the steps whose lease is (still) valid.
    PERFORM 1 FROM tasker.tasks AS t WHERE t.id = ANY (v_tasks) ORDER BY t.id FOR NO KEY UPDATE OF t;
    WITH i AS MATERIALIZED (
        SELECT x.lease, x.result, tasker.lease_step_id(x.lease) AS id
        FROM unnest(leases, results) AS x (lease, result)
    ), u AS (
        UPDATE tasker.steps AS s
        SET state = 'succeeded', result = i.result, finished_at = clock_timestamp(), lease_expires_at = NULL,
            updated_at = clock_timestamp()
        FROM i
        WHERE s.id = i.id AND s.lease = i.lease AND s.state = 'running'
        RETURNING s.id, s.task_id, s.msg_id, s.attempts, s.worker_id, s.lease
    ), tr AS (
        INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason)
        SELECT u.task_id, u.id, 'running', 'succeeded', u.attempts, u.worker_id, 'completed' FROM u
    )
    SELECT array_agg(u.id), array_agg(u.task_id), array_agg(u.lease) INTO v_ids, v_done_tasks, v_leases FROM u;

    IF cardinality(v_ids) IS DISTINCT FROM cardinality(v_steps) THEN
        -- Leases that went stale while we waited (re-claimed after expiring) keep a message.
        PERFORM tasker._restore_messages(v_steps, v_deleted);
    END IF;

    IF v_ids IS NOT NULL THEN
        IF cardinality(v_deleted) < cardinality(v_ids) THEN
            -- A message re-sent by upkeep meanwhile: delete it now (without waiting).
            FOR r IN SELECT s.queue, array_agg(s.msg_id) AS ids FROM tasker.steps AS s
                     WHERE s.id = ANY (v_ids) AND NOT s.msg_id = ANY (v_deleted) GROUP BY s.queue LOOP
                PERFORM tasker._delete_messages(r.queue, r.ids);
            END LOOP;
        END IF;

        -- 3. Children: count the finished parents off; those with none left are enqueued (one update each).
        SELECT array_agg(c.id), array_agg(c.n),
               array_agg(c.id) FILTER (WHERE c.ready), array_agg(c.queue) FILTER (WHERE c.ready),
               array_agg(c.task_id) FILTER (WHERE c.ready), array_agg(c.attempts + 1) FILTER (WHERE c.ready)
        INTO v_children, v_counts, v_ready, v_rqueues, v_rtasks, v_rattempts
        FROM (SELECT s.id, s.queue, s.task_id, s.attempts, x.n,
                     s.state = 'pending' AND s.remaining_parents = x.n AS ready
              FROM (SELECT e.child_id, count(*)::integer AS n FROM tasker.step_edges AS e
                    WHERE e.parent_id = ANY (v_ids) GROUP BY e.child_id) AS x
              JOIN tasker.steps AS s ON s.id = x.child_id) AS c;
        IF v_children IS NOT NULL THEN
            IF v_ready IS NOT NULL THEN
                v_rmsgs := tasker._send_for(v_rqueues, v_rtasks, v_ready, v_rattempts);
            END IF;
            WITH c AS MATERIALIZED (
                SELECT x.id, x.n, r.msg_id
                FROM unnest(v_children, v_counts) AS x (id, n)
                LEFT JOIN unnest(v_ready, v_rmsgs) AS r (id, msg_id) ON r.id = x.id
            ), u AS (
                UPDATE tasker.steps AS s
                SET remaining_parents = s.remaining_parents - c.n,
                    state = CASE WHEN c.msg_id IS NOT NULL THEN 'enqueued' ELSE s.state END,
                    msg_id = coalesce(c.msg_id, s.msg_id), updated_at = clock_timestamp()
                FROM c
                WHERE s.id = c.id
                RETURNING s.id, s.task_id, s.attempts, c.msg_id IS NOT NULL AS ready
            )
            INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, reason)
            SELECT u.task_id, u.id, 'pending', 'enqueued', u.attempts, 'dependencies finished'
            FROM u WHERE u.ready;
        END IF;

        -- 4. Tasks: count the finished steps off; a task with none left succeeds.
        WITH d AS (
            SELECT x.id, count(*)::integer AS n FROM unnest(v_done_tasks) AS x (id) GROUP BY x.id
        ), u AS (
            UPDATE tasker.tasks AS t
            SET unfinished_steps = t.unfinished_steps - d.n,
                state = CASE WHEN t.unfinished_steps = d.n THEN 'succeeded' ELSE t.state END,
                completed_at = CASE WHEN t.unfinished_steps = d.n THEN clock_timestamp() END,
                expires_at = CASE WHEN t.unfinished_steps = d.n THEN clock_timestamp() + t.retention END,
                updated_at = clock_timestamp()
            FROM d
            WHERE t.id = d.id
            RETURNING t.id, t.state
        )
        INSERT INTO tasker.task_transitions (task_id, from_state, to_state, reason)
        SELECT u.id, 'running', 'succeeded', 'all steps finished' FROM u WHERE u.state = 'succeeded';

        PERFORM pg_notify('tasker_task', x.id::text) FROM unnest(v_done_tasks) AS x (id);
    END IF;

    RETURN QUERY
    SELECT x.lease, d.lease IS NOT NULL, CASE WHEN d.lease IS NOT NULL THEN 'succeeded' ELSE 'stale_lease' END
    FROM unnest(leases) WITH ORDINALITY AS x (lease, ord)
    LEFT JOIN (SELECT DISTINCT y.lease FROM unnest(v_leases) AS y (lease)) AS d ON d.lease = x.lease
    ORDER BY x.ord;
END;
$$;


--
-- Name: fail(uuid, jsonb, boolean, double precision); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.fail(lease uuid, error jsonb, retryable boolean DEFAULT true, retry_after_seconds double precision DEFAULT NULL::double precision) RETURNS TABLE(ok boolean, status text, next_attempt_at timestamp with time zone)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    AS $$
#variable_conflict use_column
DECLARE
    v_id      bigint := tasker.lease_step_id(fail.lease);
    v_task    bigint;
    v_queue   text;
    v_msg     bigint;
    v_deleted bigint[];
BEGIN
    SELECT s.task_id, s.queue, s.msg_id INTO v_task, v_queue, v_msg
    FROM tasker.steps AS s WHERE s.id = v_id AND s.lease = fail.lease AND s.state = 'running';
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 'stale_lease'::text, NULL::timestamptz;
        RETURN;
    END IF;
    -- Before any lock: the attempt's message goes whatever happens next (see the lock order above).
    v_deleted := tasker._delete_messages_wait(ARRAY[v_queue], ARRAY[v_msg]);
    PERFORM tasker._lock_tasks(ARRAY[v_task]);
    IF NOT EXISTS (SELECT 1 FROM tasker.steps AS s
                   WHERE s.id = v_id AND s.lease = fail.lease AND s.state = 'running') THEN
        PERFORM tasker._restore_messages(ARRAY[v_id], v_deleted);
        RETURN QUERY SELECT false, 'stale_lease'::text, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT true, f.status, f.next_attempt_at
    FROM tasker._fail_running(v_id, fail.error, coalesce(fail.retryable, true), fail.retry_after_seconds,
                              CASE WHEN coalesce(fail.retryable, true) THEN 'failed' ELSE 'failed permanently' END)
         AS f;
END;
$$;


--
-- Name: heartbeat(uuid, integer); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.heartbeat(lease uuid, extend_seconds integer) RETURNS TABLE(ok boolean, cancelled boolean, lease_expires_at timestamp with time zone)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    AS $$
#variable_conflict use_column
DECLARE
    v_id      bigint := tasker.lease_step_id(heartbeat.lease);
    v_queue   text;
    v_msg     bigint;
    v_expires timestamptz;
    v_state   text;
BEGIN
    IF heartbeat.extend_seconds IS NULL OR heartbeat.extend_seconds < 1 THEN
        RAISE EXCEPTION 'extend_seconds must be at least 1' USING ERRCODE = '22023';
    END IF;
    UPDATE tasker.steps AS s
    SET lease_expires_at = clock_timestamp() + heartbeat.extend_seconds * interval '1 second'
    WHERE s.id = v_id AND s.lease = heartbeat.lease AND s.state = 'running'
    RETURNING s.queue, s.msg_id, s.lease_expires_at INTO v_queue, v_msg, v_expires;
    IF FOUND THEN
        -- Not waiting: a claim holding the message (it became visible) will restore the visibility from the step.
        PERFORM tasker._set_visibility(v_queue, ARRAY[v_msg], ARRAY[v_expires]);
        RETURN QUERY SELECT true, false, v_expires;
        RETURN;
    END IF;
    SELECT s.state INTO v_state FROM tasker.steps AS s WHERE s.id = v_id AND s.lease = heartbeat.lease;
    RETURN QUERY SELECT false, coalesce(v_state IN ('cancelled', 'skipped', 'succeeded', 'resolved', 'failed'), false),
                        NULL::timestamptz;
END;
$$;


--
-- Name: release(uuid); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.release(lease uuid) RETURNS TABLE(ok boolean, status text)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    AS $$
#variable_conflict use_column
DECLARE
    v_id   bigint := tasker.lease_step_id(release.lease);
    v_task bigint;
    s      tasker.steps%ROWTYPE;
    v_msg  bigint;
BEGIN
    SELECT x.task_id INTO v_task FROM tasker.steps AS x WHERE x.id = v_id;
    PERFORM tasker._lock_tasks(ARRAY[v_task]);
    UPDATE tasker.steps AS x
    SET state = 'enqueued', attempts = x.attempts - 1, lease_expires_at = NULL, updated_at = clock_timestamp()
    WHERE x.id = v_id AND x.lease = release.lease AND x.state = 'running'
    RETURNING x.* INTO s;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, 'stale_lease'::text;
        RETURN;
    END IF;
    INSERT INTO tasker.step_transitions (task_id, step_id, from_state, to_state, attempt, worker_id, reason)
    VALUES (s.task_id, s.id, 'running', 'enqueued', s.attempts + 1, s.worker_id, 'released');
    IF tasker._set_visibility(s.queue, ARRAY[s.msg_id], ARRAY[clock_timestamp()]) = 1 THEN
        PERFORM pg_notify('tasker_queue', s.queue);
    ELSE
        -- The message is gone, or locked by someone we must not wait for: send a new one (the old one, if any,
        -- is now stale and will be dropped by the claim that reads it).
        v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1]))[1];
        UPDATE tasker.steps AS x SET msg_id = v_msg WHERE x.id = s.id;
    END IF;
    PERFORM pg_notify('tasker_task', s.task_id::text);
    RETURN QUERY SELECT true, 'released'::text;
END;
$$;


--
-- Name: worker_heartbeat(text, text[], integer, integer, text, jsonb); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text DEFAULT ''::text, metadata jsonb DEFAULT NULL::jsonb) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO tasker.workers AS w (id, queues, slots, in_flight, hostname, metadata)
    VALUES (worker_id, coalesce(queues, '{}'), coalesce(slots, 0), coalesce(in_flight, 0), coalesce(hostname, ''),
            metadata)
    ON CONFLICT (id) DO UPDATE
    SET queues = excluded.queues, slots = excluded.slots, in_flight = excluded.in_flight,
        hostname = excluded.hostname, metadata = excluded.metadata, last_heartbeat_at = now()
$$;


--
-- Name: worker_stopped(text); Type: FUNCTION; Schema: tasker_internal; Owner: -
--

CREATE FUNCTION tasker_internal.worker_stopped(worker_id text) RETURNS void
    LANGUAGE sql
    AS $$
    DELETE FROM tasker.workers AS w WHERE w.id = worker_stopped.worker_id
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: queue_grants; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.queue_grants (
    role_name name NOT NULL,
    queue text NOT NULL,
    granted_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT queue_grants_queue_check CHECK (((queue = '*'::text) OR (queue ~ '^[a-z0-9_]{1,40}$'::text)))
);


--
-- Name: TABLE queue_grants; Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON TABLE tasker.queue_grants IS 'Queues each role may work with the worker protocol (* = all). Maintained with tasker.grant_worker.';


--
-- Name: queues; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.queues (
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT queues_name_check CHECK ((name ~ '^[a-z0-9_]{1,40}$'::text))
);


--
-- Name: schema_migrations; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: step_edges; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.step_edges (
    task_id bigint NOT NULL,
    parent_id bigint NOT NULL,
    child_id bigint NOT NULL,
    CONSTRAINT step_edges_no_self_check CHECK ((parent_id <> child_id))
);


--
-- Name: step_transitions; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.step_transitions (
    task_id bigint NOT NULL,
    id bigint NOT NULL,
    step_id bigint NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL,
    attempt integer NOT NULL,
    worker_id text,
    reason text NOT NULL,
    metadata jsonb,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT step_transitions_check CHECK ((((from_state || '>'::text) || to_state) = ANY (ARRAY['pending>enqueued'::text, 'pending>cancelled'::text, 'pending>skipped'::text, 'pending>succeeded'::text, 'pending>resolved'::text, 'enqueued>running'::text, 'enqueued>cancelled'::text, 'enqueued>succeeded'::text, 'enqueued>resolved'::text, 'running>succeeded'::text, 'running>running'::text, 'running>retrying'::text, 'running>failed'::text, 'running>enqueued'::text, 'running>cancelled'::text, 'running>resolved'::text, 'retrying>running'::text, 'retrying>cancelled'::text, 'retrying>succeeded'::text, 'retrying>resolved'::text, 'failed>enqueued'::text, 'failed>succeeded'::text, 'failed>resolved'::text, 'skipped>pending'::text, 'skipped>succeeded'::text, 'skipped>resolved'::text, 'cancelled>pending'::text, 'cancelled>succeeded'::text, 'cancelled>resolved'::text])))
);


--
-- Name: step_transitions_id_seq; Type: SEQUENCE; Schema: tasker; Owner: -
--

ALTER TABLE tasker.step_transitions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME tasker.step_transitions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: steps; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.steps (
    id bigint NOT NULL,
    task_id bigint NOT NULL,
    name text NOT NULL,
    handler text NOT NULL,
    queue text NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    inputs jsonb,
    result jsonb,
    last_error jsonb,
    attempts integer DEFAULT 0 NOT NULL,
    retry_base integer DEFAULT 0 NOT NULL,
    max_attempts integer NOT NULL,
    backoff_base_ms integer NOT NULL,
    backoff_max_ms integer NOT NULL,
    backoff_jitter real NOT NULL,
    timeout_seconds integer DEFAULT 0 NOT NULL,
    parent_count integer DEFAULT 0 NOT NULL,
    remaining_parents integer DEFAULT 0 NOT NULL,
    msg_id bigint,
    lease uuid,
    lease_expires_at timestamp with time zone,
    worker_id text,
    next_attempt_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT steps_counts_check CHECK (((attempts >= 0) AND ((retry_base >= 0) AND (retry_base <= attempts)) AND ((attempts - retry_base) <= max_attempts) AND ((remaining_parents >= 0) AND (remaining_parents <= parent_count)))),
    CONSTRAINT steps_lifecycle_check CHECK ((((state = ANY (ARRAY['succeeded'::text, 'failed'::text, 'cancelled'::text, 'skipped'::text, 'resolved'::text])) = (finished_at IS NOT NULL)) AND ((state <> 'running'::text) OR ((lease IS NOT NULL) AND (lease_expires_at IS NOT NULL) AND (started_at IS NOT NULL))) AND ((state <> ALL (ARRAY['enqueued'::text, 'running'::text, 'retrying'::text])) OR (msg_id IS NOT NULL)) AND ((state <> 'retrying'::text) OR (next_attempt_at IS NOT NULL)))),
    CONSTRAINT steps_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'enqueued'::text, 'running'::text, 'retrying'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text, 'skipped'::text, 'resolved'::text])))
)
WITH (fillfactor='75');


--
-- Name: steps_id_seq; Type: SEQUENCE; Schema: tasker; Owner: -
--

ALTER TABLE tasker.steps ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME tasker.steps_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: task_transitions; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.task_transitions (
    task_id bigint NOT NULL,
    id bigint NOT NULL,
    from_state text NOT NULL,
    to_state text NOT NULL,
    reason text NOT NULL,
    metadata jsonb,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT task_transitions_check CHECK ((((from_state || '>'::text) || to_state) = ANY (ARRAY['pending>running'::text, 'pending>succeeded'::text, 'pending>cancelled'::text, 'running>succeeded'::text, 'running>failed'::text, 'running>cancelled'::text, 'failed>running'::text, 'failed>succeeded'::text])))
);


--
-- Name: task_transitions_id_seq; Type: SEQUENCE; Schema: tasker; Owner: -
--

ALTER TABLE tasker.task_transitions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME tasker.task_transitions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: tasks; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.tasks (
    id bigint NOT NULL,
    external_key text NOT NULL,
    namespace text DEFAULT ''::text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    queue text DEFAULT ''::text NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    context jsonb,
    state text DEFAULT 'pending'::text NOT NULL,
    step_count integer NOT NULL,
    unfinished_steps integer NOT NULL,
    retention interval NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    expires_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tasks_lifecycle_check CHECK ((((state = ANY (ARRAY['succeeded'::text, 'failed'::text, 'cancelled'::text])) = (completed_at IS NOT NULL)) AND ((completed_at IS NULL) = (expires_at IS NULL)) AND ((completed_at IS NULL) OR (unfinished_steps = 0)) AND ((state <> 'running'::text) OR (started_at IS NOT NULL)) AND (step_count >= 1) AND ((unfinished_steps >= 0) AND (unfinished_steps <= step_count)))),
    CONSTRAINT tasks_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'running'::text, 'succeeded'::text, 'failed'::text, 'cancelled'::text])))
)
WITH (fillfactor='70');


--
-- Name: tasks_id_seq; Type: SEQUENCE; Schema: tasker; Owner: -
--

ALTER TABLE tasker.tasks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME tasker.tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: worker_functions; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.worker_functions (
    name text NOT NULL,
    guard text NOT NULL
);


--
-- Name: TABLE worker_functions; Type: COMMENT; Schema: tasker; Owner: -
--

COMMENT ON TABLE tasker.worker_functions IS 'The worker protocol functions (schema tasker) a worker role may execute, and the check each makes first.';


--
-- Name: workers; Type: TABLE; Schema: tasker; Owner: -
--

CREATE TABLE tasker.workers (
    id text NOT NULL,
    queues text[] DEFAULT '{}'::text[] NOT NULL,
    slots integer DEFAULT 0 NOT NULL,
    in_flight integer DEFAULT 0 NOT NULL,
    hostname text DEFAULT ''::text NOT NULL,
    metadata jsonb,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_heartbeat_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT workers_counts_check CHECK (((slots >= 0) AND (in_flight >= 0))),
    CONSTRAINT workers_id_check CHECK (((length(id) >= 1) AND (length(id) <= 255)))
);


--
-- Data for Name: queue_grants; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Data for Name: queues; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Data for Name: schema_migrations; Type: TABLE DATA; Schema: tasker; Owner: -
--

INSERT INTO tasker.schema_migrations VALUES (1, 'schema', '2026-12-06 04:59:24.026488+00');
INSERT INTO tasker.schema_migrations VALUES (2, 'protocol', '2026-12-06 04:59:24.063598+00');
INSERT INTO tasker.schema_migrations VALUES (3, 'retry_inputs', '2026-12-06 04:59:24.093789+00');
INSERT INTO tasker.schema_migrations VALUES (4, 'worker_roles', '2026-12-06 04:59:24.100467+00');
INSERT INTO tasker.schema_migrations VALUES (5, 'retry_timestamp', '2026-12-06 04:59:24.130964+00');


--
-- Data for Name: step_edges; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Data for Name: step_transitions; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Data for Name: steps; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Data for Name: task_transitions; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Data for Name: tasks; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Data for Name: worker_functions; Type: TABLE DATA; Schema: tasker; Owner: -
--

INSERT INTO tasker.worker_functions VALUES ('claim', 'tasker._authorize_queues(ARRAY[queue_name])');
INSERT INTO tasker.worker_functions VALUES ('complete', 'tasker._authorize_leases(ARRAY[lease])');
INSERT INTO tasker.worker_functions VALUES ('complete_many', 'tasker._authorize_leases(leases)');
INSERT INTO tasker.worker_functions VALUES ('fail', 'tasker._authorize_leases(ARRAY[lease])');
INSERT INTO tasker.worker_functions VALUES ('heartbeat', 'tasker._authorize_leases(ARRAY[lease])');
INSERT INTO tasker.worker_functions VALUES ('release', 'tasker._authorize_leases(ARRAY[lease])');
INSERT INTO tasker.worker_functions VALUES ('worker_heartbeat', 'tasker._authorize_queues(queues)');
INSERT INTO tasker.worker_functions VALUES ('worker_stopped', 'NULL');


--
-- Data for Name: workers; Type: TABLE DATA; Schema: tasker; Owner: -
--



--
-- Name: step_transitions_id_seq; Type: SEQUENCE SET; Schema: tasker; Owner: -
--

SELECT pg_catalog.setval('tasker.step_transitions_id_seq', 1, false);


--
-- Name: steps_id_seq; Type: SEQUENCE SET; Schema: tasker; Owner: -
--

SELECT pg_catalog.setval('tasker.steps_id_seq', 1, false);


--
-- Name: task_transitions_id_seq; Type: SEQUENCE SET; Schema: tasker; Owner: -
--

SELECT pg_catalog.setval('tasker.task_transitions_id_seq', 1, false);


--
-- Name: tasks_id_seq; Type: SEQUENCE SET; Schema: tasker; Owner: -
--

SELECT pg_catalog.setval('tasker.tasks_id_seq', 1, false);


--
-- Name: queue_grants queue_grants_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.queue_grants
    ADD CONSTRAINT queue_grants_pkey PRIMARY KEY (role_name, queue);


--
-- Name: queues queues_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.queues
    ADD CONSTRAINT queues_pkey PRIMARY KEY (name);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: step_edges step_edges_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.step_edges
    ADD CONSTRAINT step_edges_pkey PRIMARY KEY (parent_id, child_id);


--
-- Name: step_transitions step_transitions_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.step_transitions
    ADD CONSTRAINT step_transitions_pkey PRIMARY KEY (task_id, id);


--
-- Name: steps steps_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.steps
    ADD CONSTRAINT steps_pkey PRIMARY KEY (id);


--
-- Name: steps steps_task_id_name_key; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.steps
    ADD CONSTRAINT steps_task_id_name_key UNIQUE (task_id, name);


--
-- Name: task_transitions task_transitions_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.task_transitions
    ADD CONSTRAINT task_transitions_pkey PRIMARY KEY (task_id, id);


--
-- Name: tasks tasks_external_key_key; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.tasks
    ADD CONSTRAINT tasks_external_key_key UNIQUE (external_key);


--
-- Name: tasks tasks_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.tasks
    ADD CONSTRAINT tasks_pkey PRIMARY KEY (id);


--
-- Name: worker_functions worker_functions_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.worker_functions
    ADD CONSTRAINT worker_functions_pkey PRIMARY KEY (name);


--
-- Name: workers workers_pkey; Type: CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);


--
-- Name: step_edges_child_id_idx; Type: INDEX; Schema: tasker; Owner: -
--

CREATE INDEX step_edges_child_id_idx ON tasker.step_edges USING btree (child_id);


--
-- Name: tasks_active_idx; Type: INDEX; Schema: tasker; Owner: -
--

CREATE INDEX tasks_active_idx ON tasker.tasks USING btree (id) WHERE (completed_at IS NULL);


--
-- Name: tasks_expires_at_idx; Type: INDEX; Schema: tasker; Owner: -
--

CREATE INDEX tasks_expires_at_idx ON tasker.tasks USING btree (expires_at) WHERE (expires_at IS NOT NULL);


--
-- Name: step_transitions step_transitions_delete_guard; Type: TRIGGER; Schema: tasker; Owner: -
--

CREATE TRIGGER step_transitions_delete_guard AFTER DELETE ON tasker.step_transitions REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_delete_guard();


--
-- Name: step_transitions step_transitions_no_update; Type: TRIGGER; Schema: tasker; Owner: -
--

CREATE TRIGGER step_transitions_no_update BEFORE UPDATE OR TRUNCATE ON tasker.step_transitions FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_no_change();


--
-- Name: task_transitions task_transitions_delete_guard; Type: TRIGGER; Schema: tasker; Owner: -
--

CREATE TRIGGER task_transitions_delete_guard AFTER DELETE ON tasker.task_transitions REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_delete_guard();


--
-- Name: task_transitions task_transitions_no_update; Type: TRIGGER; Schema: tasker; Owner: -
--

CREATE TRIGGER task_transitions_no_update BEFORE UPDATE OR TRUNCATE ON tasker.task_transitions FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_no_change();


--
-- Name: step_edges step_edges_child_id_fkey; Type: FK CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.step_edges
    ADD CONSTRAINT step_edges_child_id_fkey FOREIGN KEY (child_id) REFERENCES tasker.steps(id) ON DELETE CASCADE;


--
-- Name: step_edges step_edges_parent_id_fkey; Type: FK CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.step_edges
    ADD CONSTRAINT step_edges_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES tasker.steps(id) ON DELETE CASCADE;


--
-- Name: steps steps_task_id_fkey; Type: FK CONSTRAINT; Schema: tasker; Owner: -
--

ALTER TABLE ONLY tasker.steps
    ADD CONSTRAINT steps_task_id_fkey FOREIGN KEY (task_id) REFERENCES tasker.tasks(id) ON DELETE CASCADE;


--
-- Name: FUNCTION _authorize_leases(p_leases uuid[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._authorize_leases(p_leases uuid[]) FROM PUBLIC;


--
-- Name: FUNCTION _authorize_queues(p_queues text[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._authorize_queues(p_queues text[]) FROM PUBLIC;


--
-- Name: FUNCTION _count_finished(p_task_ids bigint[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._count_finished(p_task_ids bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION _delete_messages(p_queue text, p_msg_ids bigint[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._delete_messages(p_queue text, p_msg_ids bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION _delete_messages_wait(p_queues text[], p_msg_ids bigint[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._delete_messages_wait(p_queues text[], p_msg_ids bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION _enqueue(p_step_ids bigint[], p_reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._enqueue(p_step_ids bigint[], p_reason text) FROM PUBLIC;


--
-- Name: FUNCTION _ensure_queue(p_queue text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._ensure_queue(p_queue text) FROM PUBLIC;


--
-- Name: FUNCTION _fail_running(p_step_id bigint, p_error jsonb, p_retryable boolean, p_retry_after_seconds double precision, p_reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._fail_running(p_step_id bigint, p_error jsonb, p_retryable boolean, p_retry_after_seconds double precision, p_reason text) FROM PUBLIC;


--
-- Name: FUNCTION _finish_step_manually(p_task_id bigint, p_step_name text, p_target text, p_result jsonb, p_reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._finish_step_manually(p_task_id bigint, p_step_name text, p_target text, p_result jsonb, p_reason text) FROM PUBLIC;


--
-- Name: FUNCTION _history_delete_guard(); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._history_delete_guard() FROM PUBLIC;


--
-- Name: FUNCTION _history_no_change(); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._history_no_change() FROM PUBLIC;


--
-- Name: FUNCTION _lock_tasks(p_task_ids bigint[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._lock_tasks(p_task_ids bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION _message_exists(p_queue text, p_msg_id bigint); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._message_exists(p_queue text, p_msg_id bigint) FROM PUBLIC;


--
-- Name: FUNCTION _message_step_id(message jsonb); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._message_step_id(message jsonb) FROM PUBLIC;


--
-- Name: FUNCTION _new_lease(step_id bigint); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._new_lease(step_id bigint) FROM PUBLIC;


--
-- Name: FUNCTION _queue_exists(queue text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._queue_exists(queue text) FROM PUBLIC;


--
-- Name: FUNCTION _release_children(p_step_ids bigint[], p_enqueue boolean); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._release_children(p_step_ids bigint[], p_enqueue boolean) FROM PUBLIC;


--
-- Name: FUNCTION _reopen_task(p_task_id bigint, p_reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._reopen_task(p_task_id bigint, p_reason text) FROM PUBLIC;


--
-- Name: FUNCTION _restore_messages(p_step_ids bigint[], p_deleted bigint[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._restore_messages(p_step_ids bigint[], p_deleted bigint[]) FROM PUBLIC;


--
-- Name: FUNCTION _send(p_queue text, p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[], p_visible_at timestamp with time zone); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._send(p_queue text, p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[], p_visible_at timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION _send_for(p_queues text[], p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._send_for(p_queues text[], p_task_ids bigint[], p_step_ids bigint[], p_attempts integer[]) FROM PUBLIC;


--
-- Name: FUNCTION _set_visibility(p_queue text, p_msg_ids bigint[], p_vts timestamp with time zone[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._set_visibility(p_queue text, p_msg_ids bigint[], p_vts timestamp with time zone[]) FROM PUBLIC;


--
-- Name: FUNCTION _stop_task(p_task_id bigint, p_target text, p_failed_step_id bigint, p_reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._stop_task(p_task_id bigint, p_target text, p_failed_step_id bigint, p_reason text) FROM PUBLIC;


--
-- Name: FUNCTION _unrestricted(); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker._unrestricted() FROM PUBLIC;


--
-- Name: FUNCTION admit(spec jsonb); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.admit(spec jsonb) FROM PUBLIC;


--
-- Name: FUNCTION cancel_task(task_id bigint, reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.cancel_task(task_id bigint, reason text) FROM PUBLIC;


--
-- Name: FUNCTION claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text) FROM PUBLIC;


--
-- Name: FUNCTION complete(lease uuid, result jsonb); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.complete(lease uuid, result jsonb) FROM PUBLIC;


--
-- Name: FUNCTION complete_many(leases uuid[], results jsonb[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.complete_many(leases uuid[], results jsonb[]) FROM PUBLIC;


--
-- Name: FUNCTION complete_step(task_id bigint, step_name text, result jsonb, reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.complete_step(task_id bigint, step_name text, result jsonb, reason text) FROM PUBLIC;


--
-- Name: FUNCTION fail(lease uuid, error jsonb, retryable boolean, retry_after_seconds double precision); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.fail(lease uuid, error jsonb, retryable boolean, retry_after_seconds double precision) FROM PUBLIC;


--
-- Name: FUNCTION grant_worker(role name, queues text[]); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.grant_worker(role name, queues text[]) FROM PUBLIC;


--
-- Name: FUNCTION heartbeat(lease uuid, extend_seconds integer); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.heartbeat(lease uuid, extend_seconds integer) FROM PUBLIC;


--
-- Name: FUNCTION lease_step_id(lease uuid); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.lease_step_id(lease uuid) FROM PUBLIC;


--
-- Name: FUNCTION release(lease uuid); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.release(lease uuid) FROM PUBLIC;


--
-- Name: FUNCTION resolve_step(task_id bigint, step_name text, reason text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.resolve_step(task_id bigint, step_name text, reason text) FROM PUBLIC;


--
-- Name: FUNCTION retry_step(task_id bigint, step_name text, reason text, inputs jsonb); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.retry_step(task_id bigint, step_name text, reason text, inputs jsonb) FROM PUBLIC;


--
-- Name: FUNCTION revoke_worker(role name); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.revoke_worker(role name) FROM PUBLIC;


--
-- Name: FUNCTION upkeep(batch_size integer, lease_grace_seconds integer, archive_retention_seconds integer, worker_ttl_seconds integer, as_of timestamp with time zone); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.upkeep(batch_size integer, lease_grace_seconds integer, archive_retention_seconds integer, worker_ttl_seconds integer, as_of timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text, metadata jsonb); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text, metadata jsonb) FROM PUBLIC;


--
-- Name: FUNCTION worker_stopped(worker_id text); Type: ACL; Schema: tasker; Owner: -
--

REVOKE ALL ON FUNCTION tasker.worker_stopped(worker_id text) FROM PUBLIC;


--
-- Name: FUNCTION claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.claim(queue_name text, max_messages integer, visibility_timeout_seconds integer, worker_id text) FROM PUBLIC;


--
-- Name: FUNCTION complete(lease uuid, result jsonb); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.complete(lease uuid, result jsonb) FROM PUBLIC;


--
-- Name: FUNCTION complete_many(leases uuid[], results jsonb[]); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.complete_many(leases uuid[], results jsonb[]) FROM PUBLIC;


--
-- Name: FUNCTION fail(lease uuid, error jsonb, retryable boolean, retry_after_seconds double precision); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.fail(lease uuid, error jsonb, retryable boolean, retry_after_seconds double precision) FROM PUBLIC;


--
-- Name: FUNCTION heartbeat(lease uuid, extend_seconds integer); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.heartbeat(lease uuid, extend_seconds integer) FROM PUBLIC;


--
-- Name: FUNCTION release(lease uuid); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.release(lease uuid) FROM PUBLIC;


--
-- Name: FUNCTION worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text, metadata jsonb); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.worker_heartbeat(worker_id text, queues text[], slots integer, in_flight integer, hostname text, metadata jsonb) FROM PUBLIC;


--
-- Name: FUNCTION worker_stopped(worker_id text); Type: ACL; Schema: tasker_internal; Owner: -
--

REVOKE ALL ON FUNCTION tasker_internal.worker_stopped(worker_id text) FROM PUBLIC;


--
-- PostgreSQL database dump complete
--


