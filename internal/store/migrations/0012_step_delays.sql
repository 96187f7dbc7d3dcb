-- 0012: durable delays. A step may wait, once it is ready, a delay (delay_ms) and/or until a time (not_before)
-- before its first attempt becomes claimable: its message is sent with that visibility (no worker sleeps), and
-- the step is 'enqueued' with next_attempt_at = when it becomes visible (docs/tasks.md#delays).
ALTER TABLE tasker.steps
    ADD COLUMN delay_ms   bigint NOT NULL DEFAULT 0,
    ADD COLUMN not_before timestamptz;
COMMENT ON COLUMN tasker.steps.delay_ms IS
    'Milliseconds a step waits, each time it becomes ready, before its message is visible (0: none)';
COMMENT ON COLUMN tasker.steps.not_before IS
    'No attempt of the step becomes visible before this time (NULL: no such bound)';

-- _send and _send_for take the read count of the messages they send (1: claimed as sent), so that a pool's
-- backlog can leave out messages that wait for their time (tasker.queue_backlog): CREATE OR REPLACE cannot add
-- a parameter, so the old forms go (functions/messages.sql has the new ones).
DROP FUNCTION IF EXISTS tasker._send(text, bigint[], bigint[], integer[], timestamptz);
DROP FUNCTION IF EXISTS tasker._send_for(text[], bigint[], bigint[], integer[], timestamptz);
