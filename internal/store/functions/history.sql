CREATE OR REPLACE FUNCTION tasker._history_no_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'tasker.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = '55000', HINT = 'history is deleted together with its task';
END;
$fn$;

-- History may be deleted only once its task is gone (upkeep deletes the task first, then its history).
CREATE OR REPLACE FUNCTION tasker._history_delete_guard() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows AS o JOIN tasker.tasks AS t ON t.id = o.task_id) THEN
        RAISE EXCEPTION 'tasker.% is append-only: rows of an existing task cannot be deleted', TG_TABLE_NAME
            USING ERRCODE = '55000', HINT = 'history is deleted together with its task';
    END IF;
    RETURN NULL;
END;
$fn$;

-- The guards above, on both history tables.
CREATE OR REPLACE TRIGGER step_transitions_no_update BEFORE UPDATE OR TRUNCATE ON tasker.step_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_no_change();
CREATE OR REPLACE TRIGGER step_transitions_delete_guard AFTER DELETE ON tasker.step_transitions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_delete_guard();
CREATE OR REPLACE TRIGGER task_transitions_no_update BEFORE UPDATE OR TRUNCATE ON tasker.task_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_no_change();
CREATE OR REPLACE TRIGGER task_transitions_delete_guard AFTER DELETE ON tasker.task_transitions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tasker._history_delete_guard();

-- A task's history goes with it, however the task is deleted: by upkeep's retention, or by hand (DELETE FROM
-- tasker.tasks), which would otherwise leave its history behind for ever (the histories have no foreign key).
CREATE OR REPLACE FUNCTION tasker._delete_task_history() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM tasker.step_transitions AS x WHERE x.task_id IN (SELECT o.id FROM old_rows AS o);
    DELETE FROM tasker.task_transitions AS x WHERE x.task_id IN (SELECT o.id FROM old_rows AS o);
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE TRIGGER tasks_delete_history AFTER DELETE ON tasker.tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tasker._delete_task_history();
