SELECT tasker.drop_unused_queues($1::integer, $2::integer, $3::timestamptz)
