-- 0005: stamped a retry's history with the time its delay counts from; a change of tasker._fail_running, which now
-- lives in internal/store/functions/fail_running.sql. Nothing to change in the tables.
SELECT 1;
