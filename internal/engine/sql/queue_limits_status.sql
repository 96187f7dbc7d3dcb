-- The limits of queues and what they hold now (QueueLimitStates).
SELECT queue, max_running, rate_steps, rate_seconds, running, tokens FROM tasker.queue_limits_status($1::text[])
