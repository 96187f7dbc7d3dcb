SELECT h.ok, h.cancelled, h.lease_expires_at FROM tasker.heartbeat($1::uuid, $2::integer) AS h
