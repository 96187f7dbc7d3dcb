SELECT tasker.worker_heartbeat($1::text, $2::text[], $3::integer, $4::integer, $5::text, $6::jsonb)
