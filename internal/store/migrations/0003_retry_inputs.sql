-- 0003: let a manual retry replace the step's inputs. It changed tasker.retry_step's signature only; that
-- function now lives in internal/store/functions/retry_step.sql. Nothing to change in the tables.
SELECT 1;
