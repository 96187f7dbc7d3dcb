SELECT c.lease, c.ok, c.status FROM tasker.complete_many($1::uuid[], $2::jsonb[]) AS c
