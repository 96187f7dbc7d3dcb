SELECT r.ok, r.status FROM tasker.release($1::uuid) AS r
