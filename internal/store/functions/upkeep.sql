-- Upkeep: what the operator's leader runs periodically. Safe to run concurrently (every change is re-checked
-- under the task's lock; deletions skip rows another upkeep holds). Each part handles at most batch_size items,
-- so one call is a bounded transaction; call again while a count equals batch_size.
--   timed_out:       running steps past timeout_seconds, failed as retryable errors; waiting steps past their
--                    wait_timeout_seconds (waits.sql: waiting again while attempts are left, else failed);
--   repaired:        steps that should have a message but whose message is gone (a running step whose lease
--                    expired more than lease_grace_seconds ago, an enqueued/retrying step older than that): a
--                    new message is sent, so the step runs (again) — should not happen, but is cheap to check;
--   deleted_tasks:   finished tasks past their retention, deleted with their steps, edges and history;
--   archive_deleted: rows of tasker queues' pgmq archives older than archive_retention_seconds;
--   workers_deleted: workers silent for worker_ttl_seconds.
CREATE OR REPLACE FUNCTION tasker.upkeep(batch_size integer DEFAULT 500, lease_grace_seconds integer DEFAULT 30,
                              archive_retention_seconds integer DEFAULT 604800,
                              worker_ttl_seconds integer DEFAULT 86400, as_of timestamptz DEFAULT NULL)
RETURNS TABLE (timed_out integer, repaired integer, deleted_tasks integer, archive_deleted bigint,
               workers_deleted integer)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_now       timestamptz := coalesce(upkeep.as_of, clock_timestamp());
    v_ids       bigint[];
    v_timeouts  bigint[];
    v_waits     bigint[];
    v_wait      bigint;
    v_lost      bigint[] := '{}';
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

    -- 1 and 2. What to fix, read unlocked: running steps past their timeout, and steps that should have a message
    --    but whose message is gone.
    SELECT coalesce(array_agg(x.id), '{}') INTO v_timeouts
    FROM (SELECT s.id
          FROM tasker.tasks AS t JOIN tasker.steps AS s ON s.task_id = t.id
          WHERE t.completed_at IS NULL AND s.state = 'running' AND s.timeout_seconds > 0
            AND s.started_at + s.timeout_seconds * interval '1 second' <= v_now
          ORDER BY s.started_at LIMIT upkeep.batch_size) AS x;
    -- Waits past their timeout (waits.sql) count as timeouts too.
    SELECT coalesce(array_agg(x.id), '{}') INTO v_waits
    FROM (SELECT s.id
          FROM tasker.tasks AS t JOIN tasker.steps AS s ON s.task_id = t.id
          WHERE t.completed_at IS NULL AND s.state = 'waiting' AND s.next_attempt_at <= v_now
          ORDER BY s.next_attempt_at LIMIT upkeep.batch_size) AS x;
    FOR v_queue IN SELECT q.name FROM tasker.queues AS q ORDER BY q.name LOOP
        EXIT WHEN cardinality(v_lost) >= upkeep.batch_size;
        CONTINUE WHEN NOT tasker._queue_exists(v_queue);
        EXECUTE format($sql$
            SELECT coalesce(array_agg(x.id), '{}')
            FROM (SELECT s.id
                  FROM tasker.tasks AS t JOIN tasker.steps AS s ON s.task_id = t.id
                  WHERE t.completed_at IS NULL AND s.queue = $1
                    AND ((s.state = 'running' AND s.lease_expires_at < $2)
                         OR (s.state IN ('enqueued', 'retrying') AND s.updated_at < $2
                             AND coalesce(s.next_attempt_at, '-infinity') < $2))
                    AND NOT EXISTS (SELECT 1 FROM pgmq.%I AS m WHERE m.msg_id = s.msg_id)
                  LIMIT $3) AS x
            $sql$, 'q_' || v_queue)
            INTO v_ids
            USING v_queue, v_now - upkeep.lease_grace_seconds * interval '1 second',
                  upkeep.batch_size - cardinality(v_lost);
        v_lost := v_lost || v_ids;
    END LOOP;
    IF cardinality(v_timeouts) + cardinality(v_lost) + cardinality(v_waits) > 0 THEN
        -- One lock set, taken at once in the order of locks.sql (every step of the tasks concerned, ascending, then
        -- the tasks), so that upkeep never holds one task while it waits for another that a completion holds.
        PERFORM tasker._lock_tasks(ARRAY(SELECT DISTINCT x.task_id FROM tasker.steps AS x
                                         WHERE x.id = ANY (v_timeouts || v_lost || v_waits)));

        -- 1. Timeouts, re-checked under the lock: the failure of an earlier step may have cancelled this one.
        FOR s IN SELECT * FROM tasker.steps AS x WHERE x.id = ANY (v_timeouts) ORDER BY x.id LOOP
            CONTINUE WHEN NOT EXISTS (SELECT 1 FROM tasker.steps AS x
                                      WHERE x.id = s.id AND x.state = 'running'
                                        AND x.started_at + x.timeout_seconds * interval '1 second' <= v_now);
            PERFORM tasker._fail_running(s.id,
                jsonb_build_object('message', format('step timed out after %s seconds', s.timeout_seconds),
                                   'timeout', true),
                true, NULL, 'timed out');
            v_timed_out := v_timed_out + 1;
        END LOOP;
        FOREACH v_wait IN ARRAY v_waits LOOP -- re-checked under the lock by _time_out_wait
            IF tasker._time_out_wait(v_wait, v_now) THEN
                v_timed_out := v_timed_out + 1;
            END IF;
        END LOOP;

        -- 2. Lost messages, re-checked under the lock (a timeout above may have re-sent or finished the step). A
        --    retrying step keeps the time of its next attempt (it is due: it was before v_now minus the grace).
        FOR s IN SELECT * FROM tasker.steps AS x WHERE x.id = ANY (v_lost) ORDER BY x.id LOOP
            CONTINUE WHEN s.state NOT IN ('running', 'enqueued', 'retrying')
                       OR tasker._message_exists(s.queue, s.msg_id);
            v_msg := (tasker._send(s.queue, ARRAY[s.task_id], ARRAY[s.id], ARRAY[s.attempts + 1]))[1];
            UPDATE tasker.steps AS x
            SET msg_id = v_msg, next_attempt_at = CASE WHEN x.state = 'retrying' THEN x.next_attempt_at END,
                updated_at = clock_timestamp()
            WHERE x.id = s.id;
            v_repaired := v_repaired + 1;
        END LOOP;
    END IF;

    -- 3. Retention. The tasks' history goes with them (trigger tasks_delete_history, functions/history.sql).
    WITH d AS (
        DELETE FROM tasker.tasks AS t
        WHERE t.id IN (SELECT x.id FROM tasker.tasks AS x
                       WHERE x.expires_at <= v_now ORDER BY x.expires_at LIMIT upkeep.batch_size
                       FOR UPDATE SKIP LOCKED)
        RETURNING t.id
    )
    SELECT array_agg(d.id) INTO v_ids FROM d;
    v_deleted := coalesce(cardinality(v_ids), 0);

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
$fn$;
