SELECT tasker.worker_stopped($1::text)
