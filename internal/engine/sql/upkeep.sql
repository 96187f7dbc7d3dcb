SELECT u.timed_out, u.repaired, u.deleted_tasks, u.archive_deleted, u.workers_deleted
FROM tasker.upkeep($1::integer, $2::integer, $3::integer, $4::integer, $5::timestamptz) AS u
