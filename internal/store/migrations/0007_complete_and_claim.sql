-- 0007: tasker.complete_and_claim (functions/complete.sql), a worker function: reports successes and claims the
-- steps they made ready for the caller, in one transaction.
INSERT INTO tasker.worker_functions (name, guard) VALUES ('complete_and_claim', 'tasker._authorize_leases(leases)');

-- tasker._send_for takes the time its messages become visible (functions/messages.sql), so that complete_and_claim
-- sends the messages of the steps it claims already invisible. CREATE OR REPLACE cannot add a parameter: drop the
-- old signature (the new one is created with the other functions, right after the migrations).
DROP FUNCTION IF EXISTS tasker._send_for(text[], bigint[], bigint[], integer[]);
