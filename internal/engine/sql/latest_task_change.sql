SELECT coalesce(max(x.id), 0) FROM tasker.task_transitions AS x
