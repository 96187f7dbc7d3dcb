-- 0015: PLACEHOLDER on branch `tracing` only. Migration numbers must have no gaps, and 0015 belongs to the
-- forEach branch: delete this file when merging (the real 0015 replaces it). It changes nothing.
SELECT 1;
