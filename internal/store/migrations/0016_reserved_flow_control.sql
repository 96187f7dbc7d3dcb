-- 0016: PLACEHOLDER on branch `tracing` only. Migration numbers must have no gaps, and 0016 belongs to the
-- flow-control branch: delete this file when merging (the real 0016 replaces it). It changes nothing.
SELECT 1;
