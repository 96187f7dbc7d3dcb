-- 0011: the size of large results, so that the limit on what a child step receives from its parents
-- (functions/results.sql) is checked from stored numbers rather than by reading every sibling's result again at
-- each completion (which grows with the square of the fan-in).
ALTER TABLE tasker.steps ADD COLUMN result_bytes integer;
COMMENT ON COLUMN tasker.steps.result_bytes IS
    'Bytes of the result as JSON text, recorded for results of 64 KiB or more (NULL for smaller ones)';
