SELECT r.status, r.detail FROM tasker.signal($1::bigint, $2::text, $3::jsonb, $4::text) AS r
