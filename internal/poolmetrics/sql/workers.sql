-- The self-reports of the given workers (ids = pod names), with whether each is fresh: its last heartbeat is
-- within the given number of seconds of the server's clock (so operator and database clocks need not agree).
SELECT w.id,
       w.in_flight,
       w.slots,
       w.last_heartbeat_at,
       w.last_heartbeat_at > clock_timestamp() - make_interval(secs => $2::double precision) AS fresh
FROM tasker.workers AS w
WHERE w.id = ANY ($1::text[])
