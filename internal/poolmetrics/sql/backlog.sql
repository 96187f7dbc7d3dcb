-- The backlog of each queue of $1, in order (NULL for a queue that does not exist): tasker.queue_backlog.
SELECT q.name, tasker.queue_backlog(q.name)
FROM unnest($1::text[]) WITH ORDINALITY AS q (name, ord)
ORDER BY q.ord
