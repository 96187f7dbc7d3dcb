-- Queue limits (migration 0017; docs/tasks.md#queue-limits): at most max_running steps of a queue running at once,
-- across all workers, and at most rate_steps claims per rate_seconds (a token bucket holding up to rate_steps
-- tokens: the burst). Enforced by claim (claim.sql) for queues flagged limited (tasker.queues.limited), which read
-- the limits under the row lock of tasker.queue_limits, so claims of one limited queue take turns and never
-- together exceed the limits; complete_and_claim never claims a limited queue's steps for its caller (they go
-- through claim). Unlimited queues pay nothing but the flag, read with the prioritized flag claim reads anyway.
--
-- Running steps are not counted by a counter that every path ending an attempt would have to keep right: they are
-- the queue's messages that a claim took and whose lease has not expired (read_ct > 0 and vt in the future: claim
-- re-sends the message of each step it claims, invisible until the lease expires; completion, failure and
-- cancellation delete it, a retry's new message and a release's are unread or visible, an expired lease makes it
-- visible). Counted through pgmq's index on vt, only for limited queues.
--
-- Locks (locks.sql): a queue's limit row comes first, before any message: only claims of that queue and
-- set_queue_limits take it, and they take it before anything else.

-- Sets (or, with every limit NULL, removes) the limits of a queue. The queue need not exist yet: the flag is set
-- when it does (tasker.queues' insert trigger below). A new rate starts with a full bucket; a changed one keeps its
-- tokens, up to the new burst.
CREATE OR REPLACE FUNCTION tasker.set_queue_limits(queue text, max_running integer, rate_steps integer,
                                                   rate_seconds double precision) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF set_queue_limits.queue IS NULL OR set_queue_limits.queue !~ '^[a-z0-9_]{1,40}$' THEN
        RAISE EXCEPTION 'invalid queue name %: must match ^[a-z0-9_]{1,40}$', quote_nullable(set_queue_limits.queue)
            USING ERRCODE = '22023';
    END IF;
    IF set_queue_limits.max_running IS NOT NULL AND set_queue_limits.max_running < 1 THEN
        RAISE EXCEPTION 'max_running must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF (set_queue_limits.rate_steps IS NULL) <> (set_queue_limits.rate_seconds IS NULL)
       OR set_queue_limits.rate_steps < 1 OR NOT set_queue_limits.rate_seconds > 0 THEN
        RAISE EXCEPTION 'rate: steps at least 1 per a positive number of seconds, or neither'
            USING ERRCODE = '22023';
    END IF;
    IF set_queue_limits.max_running IS NULL AND set_queue_limits.rate_steps IS NULL THEN
        DELETE FROM tasker.queue_limits AS l WHERE l.queue = set_queue_limits.queue;
        UPDATE tasker.queues AS q SET limited = false WHERE q.name = set_queue_limits.queue AND q.limited;
        RETURN;
    END IF;
    INSERT INTO tasker.queue_limits AS l (queue, max_running, rate_steps, rate_seconds, tokens)
    VALUES (set_queue_limits.queue, set_queue_limits.max_running, set_queue_limits.rate_steps,
            set_queue_limits.rate_seconds, coalesce(set_queue_limits.rate_steps, 0))
    ON CONFLICT ON CONSTRAINT queue_limits_pkey DO UPDATE
    SET max_running = EXCLUDED.max_running, rate_steps = EXCLUDED.rate_steps, rate_seconds = EXCLUDED.rate_seconds,
        tokens = CASE WHEN l.rate_steps IS NULL THEN EXCLUDED.tokens
                      ELSE least(l.tokens, coalesce(EXCLUDED.rate_steps, 0)) END,
        updated_at = clock_timestamp()
    WHERE (l.max_running, l.rate_steps, l.rate_seconds)
          IS DISTINCT FROM (EXCLUDED.max_running, EXCLUDED.rate_steps, EXCLUDED.rate_seconds);
    UPDATE tasker.queues AS q SET limited = true WHERE q.name = set_queue_limits.queue AND NOT q.limited;
END;
$fn$;

-- A queue recorded in tasker.queues (again: drop_unused_queues may have dropped it) is limited if it has limits.
CREATE OR REPLACE FUNCTION tasker._queue_limited_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.limited := EXISTS (SELECT FROM tasker.queue_limits AS l WHERE l.queue = NEW.name);
    RETURN NEW;
END;
$fn$;

CREATE OR REPLACE TRIGGER queues_limited BEFORE INSERT ON tasker.queues
FOR EACH ROW EXECUTE FUNCTION tasker._queue_limited_on_insert();

-- The queue's steps running now: messages claimed (read) whose lease has not expired.
CREATE OR REPLACE FUNCTION tasker._queue_running(p_queue text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM pgmq.%I WHERE vt > clock_timestamp() AND read_ct > 0', 'q_' || p_queue)
        INTO v_n;
    RETURN v_n;
END;
$fn$;

-- Claim's hook for a limited queue: locks its limit row (until the claim commits), refills the bucket, and returns
-- how many steps the claim may take now: p_max, or less as the running steps and the tokens allow (0: none).
-- No row (the limits were removed meanwhile): p_max.
CREATE OR REPLACE FUNCTION tasker._queue_allowance(p_queue text, p_max integer) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    l     tasker.queue_limits%ROWTYPE;
    v_max integer := p_max;
BEGIN
    SELECT * INTO l FROM tasker.queue_limits AS q WHERE q.queue = p_queue FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN p_max;
    END IF;
    IF l.rate_steps IS NOT NULL THEN
        l.tokens := least(l.rate_steps::double precision,
                          l.tokens + extract(epoch FROM clock_timestamp() - l.refilled_at) * l.rate_steps / l.rate_seconds);
        UPDATE tasker.queue_limits AS q SET tokens = l.tokens, refilled_at = clock_timestamp() WHERE q.queue = p_queue;
        v_max := least(v_max, floor(l.tokens)::integer);
    END IF;
    IF l.max_running IS NOT NULL AND v_max > 0 THEN
        v_max := least(v_max, greatest(0, l.max_running - tasker._queue_running(p_queue))::integer);
    END IF;
    RETURN v_max;
END;
$fn$;

-- Claim's hook after it claimed p_n steps of a limited queue (under the row lock _queue_allowance took): they
-- spend p_n tokens.
CREATE OR REPLACE FUNCTION tasker._queue_took(p_queue text, p_n integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE tasker.queue_limits AS q SET tokens = greatest(0, q.tokens - p_n)
    WHERE q.queue = p_queue AND q.rate_steps IS NOT NULL;
END;
$fn$;

-- queue_backlog's hook for a limited queue (queues.sql): the steps in flight, plus those visible that the limits
-- let a worker claim now (at most max_running − running, at most the tokens in the bucket). Work the limits hold
-- back is not backlog: more workers could not take it.
CREATE OR REPLACE FUNCTION tasker._queue_limited_backlog(p_queue text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    l          tasker.queue_limits%ROWTYPE;
    v_visible  bigint;
    v_inflight bigint;
    v_tokens   double precision;
BEGIN
    EXECUTE format('SELECT count(*) FILTER (WHERE vt <= clock_timestamp()),
                           count(*) FILTER (WHERE vt > clock_timestamp() AND read_ct > 0)
                    FROM pgmq.%I', 'q_' || p_queue)
        INTO v_visible, v_inflight;
    SELECT * INTO l FROM tasker.queue_limits AS q WHERE q.queue = p_queue;
    IF FOUND AND l.max_running IS NOT NULL THEN
        v_visible := least(v_visible, greatest(0, l.max_running - v_inflight));
    END IF;
    IF FOUND AND l.rate_steps IS NOT NULL THEN
        v_tokens := least(l.rate_steps::double precision,
                          l.tokens + extract(epoch FROM clock_timestamp() - l.refilled_at) * l.rate_steps / l.rate_seconds);
        v_visible := least(v_visible, floor(v_tokens)::bigint);
    END IF;
    RETURN v_inflight + v_visible;
END;
$fn$;

-- The limits of queues, and what they hold now, for status (Queue resources, taskerctl).
CREATE OR REPLACE FUNCTION tasker.queue_limits_status(p_queues text[])
RETURNS TABLE (queue text, max_running integer, rate_steps integer, rate_seconds double precision,
               running bigint, tokens double precision)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    RETURN QUERY
    SELECT l.queue, l.max_running, l.rate_steps, l.rate_seconds,
           CASE WHEN tasker._queue_exists(l.queue) THEN tasker._queue_running(l.queue) ELSE 0 END,
           CASE WHEN l.rate_steps IS NULL THEN NULL
                ELSE least(l.rate_steps::double precision,
                           l.tokens + extract(epoch FROM clock_timestamp() - l.refilled_at) * l.rate_steps / l.rate_seconds)
           END
    FROM tasker.queue_limits AS l
    WHERE l.queue = ANY (p_queues)
    ORDER BY l.queue;
END;
$fn$;
