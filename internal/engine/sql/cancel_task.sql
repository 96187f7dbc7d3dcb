SELECT r.status, r.detail FROM tasker.cancel_task($1::bigint, $2::text) AS r
