SELECT r.status, r.detail FROM tasker.retry_step($1::bigint, $2::text, $3::text, $4::jsonb) AS r
