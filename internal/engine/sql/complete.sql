SELECT c.ok, c.status FROM tasker.complete($1::uuid, $2::jsonb) AS c
