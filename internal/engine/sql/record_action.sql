-- Records that the operator action of this id is carried out on the task (WithAction): no row when it was already.
INSERT INTO tasker.task_actions (task_id, action_id) VALUES ($1::bigint, $2::text) ON CONFLICT DO NOTHING
