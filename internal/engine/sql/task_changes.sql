SELECT x.id, x.task_id FROM tasker.task_transitions AS x WHERE x.id > $1::bigint ORDER BY x.id LIMIT $2::integer
