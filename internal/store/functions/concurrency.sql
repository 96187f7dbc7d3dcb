-- Concurrency groups (migration 0017; docs/tasks.md#concurrency-groups). A task admitted with a "concurrency"
-- object {"group", "key", "max_running", "strategy"} belongs to the group '<namespace>/<group>' (or
-- '<namespace>/<group>=<value>' when "key", a SQL/JSON path over {"context": <the task's context>}, gives a value).
-- At most max_running unfinished tasks of a group hold a slot; only they have their steps enqueued. The others wait
-- (tasker.concurrency_members.waiting) with their first steps pending, unenqueued, and are released in admission
-- (task id) order, one per freed slot, in the transaction that finishes a slot holder, whatever finishes it
-- (success, failure, cancellation, an operator's action): _concurrency_finished, called by the statements that
-- finish tasks (complete_and_claim, _count_finished, _stop_task) for the tasks with a group among them. Strategies when a new task does not fit: 'Queue' (it waits),
-- 'CancelInProgress' (the group's oldest slot holders are cancelled to make room), 'CancelNewest' (the new task is
-- cancelled at once).
--
-- Slots, without a lock on the group (locks.sql): the slots taken are the group's members that are not waiting.
-- A finishing slot holder hands its own slot to at most one waiter (one for one: the count cannot grow), in its own
-- transaction, under the rows of the task that finishes; it takes no group-wide lock, so finishes of tasks of
-- several groups in one batch cannot deadlock on groups. Only admissions and the upkeep's dispatch fill slots that
-- are free (more than one, by count), and they serialise per group on a transaction advisory lock taken before
-- anything else; they first wait for the holders' finishes in flight and hold off later ones (_concurrency_settle),
-- so their count is exact and a later finish sees the waiter they add. A finish's own count comes from its snapshot,
-- which shows a concurrent finish's holder still holding (its delete is not committed) and not its release: it
-- never looks lower than it will be, so no slot is given twice. Releasing a waiter locks the waiter's steps, never
-- waiting for a lock while it holds them (NOWAIT, tried again for up to 100 ms: another release of the group that
-- holds them commits within milliseconds, and then the next waiter is taken, so the order is kept; a canceller
-- or an operator's action holding them makes it skip the task for now) and, should it finish at once (every first
-- step omitted), its task row.

-- Why p_key cannot be a concurrency key (NULL: it can): a SQL/JSON path over {"context": ...}, at most 1024
-- characters.
CREATE OR REPLACE FUNCTION tasker._concurrency_key_problem(p_key text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    RETURN tasker._path_problem(p_key); -- conditions.sql; NULL for NULL
END;
$fn$;

-- The group key of a task about to be admitted with p_conc (the admission document's "concurrency"), or an error
-- (22023) naming the field.
CREATE OR REPLACE FUNCTION tasker._concurrency_group_key(p_conc jsonb, p_namespace text, p_context jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    v_problem text;
    v_value   jsonb;
    v_text    text;
BEGIN
    IF jsonb_typeof(p_conc) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'spec.concurrency: must be an object' USING ERRCODE = '22023';
    END IF;
    v_problem := tasker._unknown_key(p_conc, ARRAY['group', 'key', 'max_running', 'strategy'], 'spec.concurrency');
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(p_conc -> 'group') IS DISTINCT FROM 'string'
       OR (p_conc ->> 'group') !~ '^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$' THEN
        RAISE EXCEPTION 'spec.concurrency.group: required, lower-case letters, digits, - _ ., at most 63 characters'
            USING ERRCODE = '22023';
    END IF;
    IF coalesce(jsonb_typeof(p_conc -> 'max_running'), 'null') NOT IN ('null', 'number')
       OR (p_conc ->> 'max_running')::numeric NOT BETWEEN 1 AND 10000
       OR (p_conc ->> 'max_running')::numeric <> trunc((p_conc ->> 'max_running')::numeric) THEN
        RAISE EXCEPTION 'spec.concurrency.max_running: must be a whole number from 1 to 10000'
            USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_conc ->> 'strategy', 'Queue') NOT IN ('Queue', 'CancelInProgress', 'CancelNewest') THEN
        RAISE EXCEPTION 'spec.concurrency.strategy: must be Queue, CancelInProgress or CancelNewest, not %',
            p_conc -> 'strategy' USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_conc ->> 'key', '') = '' THEN
        RETURN p_namespace || '/' || (p_conc ->> 'group');
    END IF;
    v_problem := tasker._concurrency_key_problem(p_conc ->> 'key');
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'spec.concurrency.key: %', v_problem USING ERRCODE = '22023';
    END IF;
    v_value := jsonb_path_query_first(jsonb_build_object('context', coalesce(p_context, 'null'::jsonb)),
                                      (p_conc ->> 'key')::jsonpath, silent => true);
    IF v_value IS NULL OR jsonb_typeof(v_value) = 'null' THEN
        RAISE EXCEPTION 'spec.concurrency.key: % finds nothing in the task''s context', p_conc ->> 'key'
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(v_value) NOT IN ('string', 'number', 'boolean') THEN
        RAISE EXCEPTION 'spec.concurrency.key: % gives an %, not a string, number or boolean', p_conc ->> 'key',
            jsonb_typeof(v_value) USING ERRCODE = '22023';
    END IF;
    v_text := v_value #>> '{}';
    IF length(v_text) > 253 THEN
        RAISE EXCEPTION 'spec.concurrency.key: % gives a value of % characters (at most 253)', p_conc ->> 'key',
            length(v_text) USING ERRCODE = '22023';
    END IF;
    RETURN p_namespace || '/' || (p_conc ->> 'group') || '=' || v_text;
END;
$fn$;

-- Admission's second hook (admit.sql), for a task just inserted (p_task_id, not yet visible to anyone) with a
-- "concurrency" object: records its group, and says whether it may enqueue its first steps now (true: it holds a
-- slot). false: it waits for a slot, or (CancelNewest) was cancelled.
CREATE OR REPLACE FUNCTION tasker._concurrency_admit(p_task_id bigint, spec jsonb) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_group    text;
    v_max      integer := coalesce((spec -> 'concurrency' ->> 'max_running')::integer, 1);
    v_strategy text := coalesce(spec -> 'concurrency' ->> 'strategy', 'Queue');
    v_victim   bigint;
    v_who      text := format('%s/%s', coalesce(spec ->> 'namespace', ''), coalesce(spec ->> 'name', ''));
BEGIN
    v_group := tasker._concurrency_group_key(spec -> 'concurrency', coalesce(spec ->> 'namespace', ''),
                                             spec -> 'context');
    PERFORM tasker._concurrency_lock(v_group);
    UPDATE tasker.tasks AS t SET concurrency_group = v_group WHERE t.id = p_task_id;
    INSERT INTO tasker.concurrency_groups AS g (key, max_running, strategy) VALUES (v_group, v_max, v_strategy)
    ON CONFLICT (key) DO UPDATE SET max_running = EXCLUDED.max_running, strategy = EXCLUDED.strategy,
                                    updated_at = clock_timestamp()
    WHERE (g.max_running, g.strategy) IS DISTINCT FROM (EXCLUDED.max_running, EXCLUDED.strategy);

    IF v_strategy = 'CancelInProgress' THEN
        -- Make room by cancelling the oldest slot holders (one that finishes meanwhile is left alone by
        -- cancel_task). Each cancellation frees its slot (and gives it to a waiter, if the group has any).
        FOR v_victim IN
            SELECT m.task_id FROM tasker.concurrency_members AS m
            WHERE m.group_key = v_group AND NOT m.waiting
            ORDER BY m.task_id
            LIMIT greatest(0, tasker._concurrency_running(v_group) - v_max + 1)
        LOOP
            PERFORM tasker.cancel_task(v_victim, format('cancelled by %s: concurrency group %s is full (CancelInProgress)',
                                                        v_who, v_group));
        END LOOP;
    END IF;

    PERFORM tasker._concurrency_settle(v_group);
    IF tasker._concurrency_running(v_group) < v_max
       AND NOT EXISTS (SELECT FROM tasker.concurrency_members AS m WHERE m.group_key = v_group AND m.waiting) THEN
        INSERT INTO tasker.concurrency_members (task_id, group_key, waiting) VALUES (p_task_id, v_group, false);
        RETURN true;
    END IF;
    IF v_strategy = 'CancelNewest' THEN
        PERFORM tasker._stop_task(p_task_id, 'cancelled', NULL,
                                  format('concurrency group %s is full (CancelNewest)', v_group));
        RETURN false;
    END IF;
    INSERT INTO tasker.concurrency_members (task_id, group_key, waiting) VALUES (p_task_id, v_group, true);
    -- Slots free with waiters (a release skipped them): fill them, in order. Should this task get one too, the
    -- release has enqueued its first steps already: admit must not.
    PERFORM tasker._concurrency_fill(v_group);
    RETURN false;
END;
$fn$;

-- Serialises admissions of a group and the calls that fill its free slots (admissions, dispatch) until the
-- transaction ends.
CREATE OR REPLACE FUNCTION tasker._concurrency_lock(p_group text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    -- Hash collisions only serialise more.
    PERFORM pg_advisory_xact_lock(hashtextextended('tasker.concurrency_group:' || p_group, 0));
END;
$fn$;

-- Waits for the finishes of the group's slot holders that are in flight, and holds off those that have not begun
-- until this transaction ends (a share lock on every holder's row, which a finish deletes): a count taken
-- afterwards is exact, and a finish that comes later sees the waiter this transaction adds. For the calls that fill
-- free slots, under _concurrency_lock. The locks are taken all at once without waiting, again and again (every 2 ms,
-- for up to 2 s; then the count may look too high, and upkeep's dispatch gives a slot left free): waiting for one
-- while holding another could deadlock with a batch that finishes two holders of the group in the other order.
CREATE OR REPLACE FUNCTION tasker._concurrency_settle(p_group text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. 1000 LOOP
        BEGIN
            PERFORM FROM tasker.concurrency_members AS m WHERE m.group_key = p_group AND NOT m.waiting
            ORDER BY m.task_id FOR SHARE NOWAIT;
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_sleep(0.002); -- the subtransaction's locks are gone: the finish can go on
        END;
    END LOOP;
END;
$fn$;

-- Locks every step of a waiting task p_task for its release, without waiting while holding any (a canceller, an
-- operator's action or another release of the group may hold them): tries again every 2 ms for up to 100 ms, so
-- that a release that holds it, which commits within milliseconds, goes first (the group's order is kept), but
-- never deadlocks (it gives up, and the task is skipped for now). Returns whether it got them.
CREATE OR REPLACE FUNCTION tasker._concurrency_take_waiter(p_task bigint) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. 50 LOOP
        BEGIN
            PERFORM FROM tasker.steps AS s WHERE s.task_id = p_task ORDER BY s.id FOR NO KEY UPDATE NOWAIT;
            RETURN true;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_sleep(0.002);
        END;
    END LOOP;
    RETURN false;
END;
$fn$;

-- Admission's first hook (admit.sql), before the task is inserted: checks the "concurrency" object and takes its
-- group's lock, so that tasks of a group get their ids (the group's order) one admission at a time.
CREATE OR REPLACE FUNCTION tasker._concurrency_lock_spec(spec jsonb) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tasker._concurrency_lock(tasker._concurrency_group_key(spec -> 'concurrency',
                                                                   coalesce(spec ->> 'namespace', ''), spec -> 'context'));
END;
$fn$;

-- The group's slots taken, as this transaction sees them.
CREATE OR REPLACE FUNCTION tasker._concurrency_running(p_group text) RETURNS integer
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    RETURN (SELECT count(*) FROM tasker.concurrency_members AS m WHERE m.group_key = p_group AND NOT m.waiting);
END;
$fn$;

-- Starts the group's oldest waiting task whose steps nobody holds, if a slot is free as this transaction sees it:
-- it takes the slot and its first steps are enqueued. Returns whether it started one.
CREATE OR REPLACE FUNCTION tasker._concurrency_release(p_group text) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_cand   bigint;
    v_roots  bigint[];
BEGIN
    IF tasker._concurrency_running(p_group)
       >= (SELECT g.max_running FROM tasker.concurrency_groups AS g WHERE g.key = p_group) THEN
        RETURN false;
    END IF;
    FOR v_cand IN SELECT m.task_id FROM tasker.concurrency_members AS m
                  WHERE m.group_key = p_group AND m.waiting ORDER BY m.task_id LIMIT 100 LOOP
        CONTINUE WHEN NOT tasker._concurrency_take_waiter(v_cand);
        -- Still waiting (read again: a release or a cancellation that held it may have committed meanwhile)?
        UPDATE tasker.concurrency_members AS m SET waiting = false, since = clock_timestamp()
        WHERE m.task_id = v_cand AND m.waiting;
        CONTINUE WHEN NOT FOUND; -- (a finished task has no member row)
        SELECT array_agg(s.id ORDER BY s.id) INTO v_roots FROM tasker.steps AS s
        WHERE s.task_id = v_cand AND s.parent_count = 0 AND s.state = 'pending';
        IF v_roots IS NOT NULL THEN
            PERFORM tasker._enqueue(v_roots, 'concurrency slot free');
        END IF;
        PERFORM pg_notify('tasker_task', v_cand::text);
        RETURN true;
    END LOOP;
    RETURN false;
END;
$fn$;

-- Gives every free slot of the group to its waiters, oldest first. The caller holds _concurrency_lock. Returns how
-- many it started.
CREATE OR REPLACE FUNCTION tasker._concurrency_fill(p_group text) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n integer := 0;
BEGIN
    WHILE tasker._concurrency_release(p_group) LOOP
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END;
$fn$;

-- The finishing hook: tasks of groups (p_ids, ascending) just finished (succeeded, failed, cancelled), under their
-- rows' locks: called where a task finishes (complete_and_claim, _count_finished, _stop_task), only for tasks with
-- a group, so other tasks pay nothing. A finished slot holder hands its slot to the next waiter (one for one); a
-- finished waiter just leaves.
CREATE OR REPLACE FUNCTION tasker._concurrency_finished(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_id      bigint;
    v_group   text;
    v_waiting boolean;
BEGIN
    FOREACH v_id IN ARRAY p_ids LOOP
        DELETE FROM tasker.concurrency_members AS m WHERE m.task_id = v_id RETURNING m.waiting, m.group_key
        INTO v_waiting, v_group;
        IF v_waiting = false THEN
            PERFORM tasker._concurrency_release(v_group);
        END IF;
    END LOOP;
END;
$fn$;

-- The reopening hook (_reopen_task): a failed task of a group runs again because an operator retried, resolved or
-- completed its failed steps. It takes a slot back at once, even beyond max_running: an operator asked for it.
CREATE OR REPLACE FUNCTION tasker._concurrency_reopened(p_id bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO tasker.concurrency_members (task_id, group_key, waiting)
    SELECT t.id, t.concurrency_group, false FROM tasker.tasks AS t WHERE t.id = p_id AND t.concurrency_group IS NOT NULL
    ON CONFLICT (task_id) DO NOTHING;
END;
$fn$;

-- Fills the free slots of groups that have waiters (slots a release could not give: the waiter was locked at the
-- time). Upkeep's safety net; returns how many tasks it started. Also forgets groups without tasks whose row is a
-- day old (one per key value ever used would pile up); an admission that is using one holds its lock, and the
-- next admission of a forgotten group records it again.
CREATE OR REPLACE FUNCTION tasker.concurrency_dispatch(batch_size integer DEFAULT 100) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_group text;
    v_n     integer := 0;
BEGIN
    FOR v_group IN SELECT g.key FROM tasker.concurrency_groups AS g
                   WHERE EXISTS (SELECT FROM tasker.concurrency_members AS m WHERE m.group_key = g.key AND m.waiting)
                     AND tasker._concurrency_running(g.key) < g.max_running
                   ORDER BY g.key LIMIT concurrency_dispatch.batch_size LOOP
        PERFORM tasker._concurrency_lock(v_group);
        PERFORM tasker._concurrency_settle(v_group);
        v_n := v_n + tasker._concurrency_fill(v_group);
    END LOOP;
    DELETE FROM tasker.concurrency_groups AS g
    WHERE g.key IN (SELECT g2.key FROM tasker.concurrency_groups AS g2
                    WHERE g2.updated_at < clock_timestamp() - interval '1 day'
                      AND NOT EXISTS (SELECT FROM tasker.concurrency_members AS m WHERE m.group_key = g2.key)
                    ORDER BY g2.key LIMIT concurrency_dispatch.batch_size)
      AND pg_try_advisory_xact_lock(hashtextextended('tasker.concurrency_group:' || g.key, 0))
      AND NOT EXISTS (SELECT FROM tasker.concurrency_members AS m WHERE m.group_key = g.key);
    RETURN v_n;
END;
$fn$;

-- Where a task stands in its group: the group (NULL row for a task without one), whether it waits for a slot, how
-- many of the group's waiters are ahead of it, the group's limit and slots taken.
CREATE OR REPLACE FUNCTION tasker.concurrency_status(p_task_id bigint)
RETURNS TABLE (group_key text, waiting boolean, ahead bigint, max_running integer, running integer)
LANGUAGE sql STABLE AS $fn$
    SELECT t.concurrency_group, coalesce(m.waiting, false),
           CASE WHEN m.waiting THEN (SELECT count(*) FROM tasker.concurrency_members AS w
                                      WHERE w.group_key = m.group_key AND w.waiting AND w.task_id < m.task_id)
                ELSE 0 END,
           g.max_running,
           (SELECT count(*)::integer FROM tasker.concurrency_members AS r
            WHERE r.group_key = t.concurrency_group AND NOT r.waiting)
    FROM tasker.tasks AS t
    LEFT JOIN tasker.concurrency_members AS m ON m.task_id = t.id
    LEFT JOIN tasker.concurrency_groups AS g ON g.key = t.concurrency_group
    WHERE t.id = p_task_id AND t.concurrency_group IS NOT NULL
$fn$;
