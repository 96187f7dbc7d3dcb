-- Free slots of concurrency groups to waiters that releases skipped (DispatchConcurrency).
SELECT tasker.concurrency_dispatch($1::integer)
