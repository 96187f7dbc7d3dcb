-- Sets or removes a queue's limits (SetQueueLimits).
SELECT tasker.set_queue_limits($1::text, $2::integer, $3::integer, $4::double precision)
