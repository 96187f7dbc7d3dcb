SELECT f.ok, f.status, f.next_attempt_at
FROM tasker.fail($1::uuid, $2::jsonb, $3::boolean, $4::double precision) AS f
