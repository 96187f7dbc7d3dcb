-- 0015 is the lead's forEach migration (branch main). This empty placeholder only keeps the numbering
-- contiguous on the flowcontrol branch; delete it when merging.
SELECT 1;
