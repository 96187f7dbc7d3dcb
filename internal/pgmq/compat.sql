-- tasker-operator's pgmq-compatible schema.
--
-- A plain SQL / PL/pgSQL implementation of the subset of pgmq (github.com/pgmq/pgmq, extension versions 1.5 to
-- 1.13) that tasker-operator uses, written from the project's specification of that subset (PGMQ.md in the
-- design notes). It creates the same schema, tables, types and functions (names, argument names and types,
-- defaults, return types, error messages), so that code written against it runs unchanged against the real
-- extension.
--
-- The script is re-runnable: every object is created with IF NOT EXISTS or CREATE OR REPLACE, so an upgrade is a
-- re-run. It contains no transaction control; the installer runs it inside its own transaction.
--
-- Conventions:
--   * queue table pgmq.q_<name>, archive table pgmq.a_<name> (lower-cased), identifiers always through
--     format('%I');
--   * visibility (vt) is computed from clock_timestamp(), so a long transaction does not freeze time;
--   * no overload family mixes parameter defaults with a shorter overload, so a call whose every argument is cast
--     always resolves to exactly one function.

CREATE SCHEMA IF NOT EXISTS pgmq;

-- ---------------------------------------------------------------------------------------------------------------
-- Catalogue of queues.

CREATE TABLE IF NOT EXISTS pgmq.meta (
    queue_name     varchar UNIQUE NOT NULL,
    is_partitioned boolean NOT NULL,
    is_unlogged    boolean NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------------------------
-- Types (CREATE TYPE has no IF NOT EXISTS).

DO $types$
BEGIN
    IF to_regtype('pgmq.message_record') IS NULL THEN
        CREATE TYPE pgmq.message_record AS (
            msg_id       bigint,
            read_ct      integer,
            enqueued_at  timestamptz,
            last_read_at timestamptz,
            vt           timestamptz,
            message      jsonb,
            headers      jsonb
        );
    END IF;

    IF to_regtype('pgmq.queue_record') IS NULL THEN
        CREATE TYPE pgmq.queue_record AS (
            queue_name     varchar,
            is_partitioned boolean,
            is_unlogged    boolean,
            created_at     timestamptz
        );
    END IF;

    IF to_regtype('pgmq.metrics_result') IS NULL THEN
        CREATE TYPE pgmq.metrics_result AS (
            queue_name           text,
            queue_length         bigint,
            newest_msg_age_sec   integer,
            oldest_msg_age_sec   integer,
            total_messages       bigint,
            scrape_time          timestamptz,
            queue_visible_length bigint
        );
    END IF;
END
$types$;

-- ---------------------------------------------------------------------------------------------------------------
-- Names.

-- format_table_name returns the (unquoted) table name of a queue: lower(prefix || '_' || queue_name). It rejects
-- the characters pgmq rejects; every function goes through it, so no function ever builds SQL from such a name.
CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF strpos(queue_name, '$') > 0
        OR strpos(queue_name, ';') > 0
        OR strpos(queue_name, '--') > 0
        OR strpos(queue_name, '''') > 0 THEN
        RAISE EXCEPTION E'queue name contains invalid characters: $, ;, --, or \\\'';
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END;
$fn$;

-- validate_queue_name enforces pgmq's length limit (47 = 63 - the longest prefix pgmq ever puts in front).
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $fn$
BEGIN
    IF length(queue_name) > 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
    END IF;
END;
$fn$;

-- ---------------------------------------------------------------------------------------------------------------
-- Queue lifecycle.

CREATE OR REPLACE FUNCTION pgmq."create"(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    atable text := pgmq.format_table_name(queue_name, 'a');
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    -- Serialises concurrent create/drop of the same queue: CREATE TABLE IF NOT EXISTS alone races.
    PERFORM pg_advisory_xact_lock(hashtext('pgmq.queue_' || queue_name));

    -- Every read rewrites vt (an indexed column), so queue tables churn: vacuum them early and often.
    EXECUTE format(
        $sql$
        CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  timestamptz NOT NULL DEFAULT now(),
            last_read_at timestamptz,
            vt           timestamptz NOT NULL,
            message      jsonb,
            headers      jsonb
        ) WITH (
            autovacuum_vacuum_scale_factor = 0.01,
            autovacuum_vacuum_threshold = 100,
            autovacuum_analyze_scale_factor = 0.02,
            autovacuum_analyze_threshold = 100
        )
        $sql$,
        qtable);

    EXECUTE format(
        $sql$
        CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id       bigint PRIMARY KEY,
            read_ct      integer NOT NULL DEFAULT 0,
            enqueued_at  timestamptz NOT NULL DEFAULT now(),
            last_read_at timestamptz,
            archived_at  timestamptz NOT NULL DEFAULT now(),
            vt           timestamptz NOT NULL,
            message      jsonb,
            headers      jsonb
        )
        $sql$,
        atable);

    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt)', qtable || '_vt_idx', qtable);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)', 'archived_at_idx_' || queue_name, atable);

    EXECUTE 'INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) VALUES ($1, false, false)
             ON CONFLICT (queue_name) DO NOTHING'
    USING queue_name;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    atable text := pgmq.format_table_name(queue_name, 'a');
    existed boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgmq.queue_' || queue_name));

    existed := to_regclass(format('pgmq.%I', qtable)) IS NOT NULL;
    IF existed THEN
        EXECUTE format('DROP TABLE pgmq.%I', qtable);
    END IF;
    IF to_regclass(format('pgmq.%I', atable)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE pgmq.%I', atable);
    END IF;
    EXECUTE 'DELETE FROM pgmq.meta WHERE queue_name = $1' USING queue_name;

    IF NOT existed THEN
        RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
        RETURN false;
    END IF;
    RETURN true;
END;
$fn$;

-- purge_queue deletes (not truncates) so that it is transactional, returns the count, and keeps the id sequence.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    deleted bigint;
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I', pgmq.format_table_name(queue_name, 'q'));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE
AS $fn$
    SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at
    FROM pgmq.meta AS m
    ORDER BY m.queue_name;
$fn$;

-- ---------------------------------------------------------------------------------------------------------------
-- send: six overloads, none with defaults (as in pgmq >= 1.5). The 4-argument timestamptz form does the work.

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
        pgmq.format_table_name(queue_name, 'q'))
    USING delay, msg, headers;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, headers, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send(queue_name, msg, NULL::jsonb, delay);
$fn$;

-- ---------------------------------------------------------------------------------------------------------------
-- send_batch: the same family over arrays. Messages get ids in array order.

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    n_msgs integer := coalesce(array_length(msgs, 1), 0);
BEGIN
    IF msgs IS NULL OR n_msgs = 0 THEN
        RAISE EXCEPTION 'msgs cannot be NULL or empty';
    END IF;
    IF headers IS NOT NULL AND coalesce(array_length(headers, 1), 0) <> n_msgs THEN
        RAISE EXCEPTION 'headers array length (%) must match msgs array length (%)',
            coalesce(array_length(headers, 1), 0), n_msgs;
    END IF;

    RETURN QUERY EXECUTE format(
        $sql$
        INSERT INTO pgmq.%I (vt, message, headers)
        SELECT $1, m.message, h.header
        FROM unnest($2) WITH ORDINALITY AS m (message, ord)
        LEFT JOIN unnest($3) WITH ORDINALITY AS h (header, ord) ON h.ord = m.ord
        ORDER BY m.ord
        RETURNING msg_id
        $sql$,
        pgmq.format_table_name(queue_name, 'q'))
    USING delay, msgs, headers;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, headers, clock_timestamp());
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], clock_timestamp() + make_interval(secs => delay));
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql
AS $fn$
    SELECT pgmq.send_batch(queue_name, msgs, NULL::jsonb[], delay);
$fn$;

-- ---------------------------------------------------------------------------------------------------------------
-- Consuming.

-- read locks up to qty visible messages (oldest id first, skipping rows other readers hold), makes them invisible
-- for vt seconds and returns them in msg_id order. conditional = '{}' (or NULL) means no filter.
CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        WITH picked AS (
            SELECT q.msg_id
            FROM pgmq.%1$I AS q
            WHERE q.vt <= clock_timestamp()
              AND ($3 IS NULL OR $3 = '{}'::jsonb OR q.message @> $3)
            ORDER BY q.msg_id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ), updated AS (
            UPDATE pgmq.%1$I AS q
            SET vt = clock_timestamp() + $1,
                read_ct = q.read_ct + 1,
                last_read_at = clock_timestamp()
            FROM picked
            WHERE q.msg_id = picked.msg_id
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers
        )
        SELECT u.msg_id, u.read_ct, u.enqueued_at, u.last_read_at, u.vt, u.message, u.headers
        FROM updated AS u
        ORDER BY u.msg_id
        $sql$,
        qtable)
    USING make_interval(secs => vt), qty, conditional;
END;
$fn$;

-- read_with_poll repeats read every poll_interval_ms until it returns rows or max_poll_seconds have passed. Each
-- attempt is a new statement, so it sees messages committed while it waits.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
    queue_name text,
    vt integer,
    qty integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100,
    conditional jsonb DEFAULT '{}'
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_variable
DECLARE
    stop_at timestamptz := clock_timestamp() + make_interval(secs => max_poll_seconds);
BEGIN
    LOOP
        RETURN QUERY
            SELECT r.msg_id, r.read_ct, r.enqueued_at, r.last_read_at, r.vt, r.message, r.headers
            FROM pgmq.read(queue_name, vt, qty, conditional) AS r;
        IF FOUND OR clock_timestamp() >= stop_at THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(least(poll_interval_ms::numeric / 1000,
                               greatest(extract(epoch FROM stop_at - clock_timestamp()), 0)));
    END LOOP;
END;
$fn$;

-- pop reads and deletes in one statement; read_ct is not incremented.
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        WITH picked AS (
            SELECT q.msg_id
            FROM pgmq.%1$I AS q
            WHERE q.vt <= clock_timestamp()
            ORDER BY q.msg_id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), deleted AS (
            DELETE FROM pgmq.%1$I AS q
            USING picked
            WHERE q.msg_id = picked.msg_id
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers
        )
        SELECT d.msg_id, d.read_ct, d.enqueued_at, d.last_read_at, d.vt, d.message, d.headers
        FROM deleted AS d
        ORDER BY d.msg_id
        $sql$,
        pgmq.format_table_name(queue_name, 'q'))
    USING qty;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    deleted bigint;
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1 RETURNING msg_id', pgmq.format_table_name(queue_name, 'q'))
    INTO deleted
    USING msg_id;
    RETURN deleted IS NOT NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        WITH deleted AS (
            DELETE FROM pgmq.%I WHERE msg_id = ANY ($1) RETURNING msg_id
        )
        SELECT d.msg_id FROM deleted AS d ORDER BY d.msg_id
        $sql$,
        pgmq.format_table_name(queue_name, 'q'))
    USING msg_ids;
END;
$fn$;

-- archive moves rows to a_<name> in one statement; archived_at takes its default.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        WITH moved AS (
            DELETE FROM pgmq.%I
            WHERE msg_id = ANY ($1)
            RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
        ), inserted AS (
            INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)
            SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
            FROM moved
            RETURNING msg_id
        )
        SELECT i.msg_id FROM inserted AS i ORDER BY i.msg_id
        $sql$,
        pgmq.format_table_name(queue_name, 'q'),
        pgmq.format_table_name(queue_name, 'a'))
    USING msg_ids;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN EXISTS (SELECT 1 FROM pgmq.archive(queue_name, ARRAY[msg_id]));
END;
$fn$;

-- set_vt changes the visibility of one message; read_ct is unchanged; no row for an unknown id.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamptz)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        UPDATE pgmq.%I AS q
        SET vt = $1
        WHERE q.msg_id = $2
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers
        $sql$,
        pgmq.format_table_name(queue_name, 'q'))
    USING vt, msg_id;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $fn$
    SELECT r.msg_id, r.read_ct, r.enqueued_at, r.last_read_at, r.vt, r.message, r.headers
    FROM pgmq.set_vt(queue_name, msg_id, clock_timestamp() + make_interval(secs => vt)) AS r;
$fn$;

-- ---------------------------------------------------------------------------------------------------------------
-- Metrics.

-- metrics: queue_length counts every row, queue_visible_length the rows with vt <= now(); ages come from
-- enqueued_at (NULL when the queue is empty); total_messages is the last id the queue's identity sequence issued
-- (ids are never reused; purges and rolled-back sends do not give them back).
CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name, 'q');
    seq text;
    result pgmq.metrics_result;
BEGIN
    seq := pg_get_serial_sequence(format('pgmq.%I', qtable), 'msg_id');

    EXECUTE format(
        $sql$
        SELECT $1::text,
               count(*),
               extract(epoch FROM now() - max(q.enqueued_at))::integer,
               extract(epoch FROM now() - min(q.enqueued_at))::integer,
               (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM %s AS s),
               now(),
               count(*) FILTER (WHERE q.vt <= now())
        FROM pgmq.%I AS q
        $sql$,
        seq, qtable)
    INTO result.queue_name, result.queue_length, result.newest_msg_age_sec, result.oldest_msg_age_sec,
         result.total_messages, result.scrape_time, result.queue_visible_length
    USING queue_name;
    RETURN result;
END;
$fn$;

CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    name varchar;
BEGIN
    FOR name IN SELECT m.queue_name FROM pgmq.meta AS m ORDER BY m.queue_name LOOP
        RETURN NEXT pgmq.metrics(name);
    END LOOP;
END;
$fn$;

-- ---------------------------------------------------------------------------------------------------------------
-- Mark the install so the installer recognises it (and re-applies this script to pick up fixes).

COMMENT ON SCHEMA pgmq IS 'tasker-operator pgmq-compatible schema v1';
