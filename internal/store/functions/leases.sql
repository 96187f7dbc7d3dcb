-- A lease is 16 bytes: the step id (8 bytes, big-endian) then 8 random bytes. Callers treat it as an opaque token;
-- the engine finds the step by primary key, so no index on steps.lease is needed (which keeps claim's update HOT).
CREATE OR REPLACE FUNCTION tasker.lease_step_id(lease uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT ('x' || substr(encode(uuid_send(lease), 'hex'), 1, 16))::bit(64)::bigint
$fn$;

CREATE OR REPLACE FUNCTION tasker._new_lease(step_id bigint) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $fn$
    SELECT encode(int8send(step_id) || substr(uuid_send(gen_random_uuid()), 9, 8), 'hex')::uuid
$fn$;

-- The step id a message refers to, or NULL for a message tasker did not write.
CREATE OR REPLACE FUNCTION tasker._message_step_id(message jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN jsonb_typeof(message -> 'step_id') = 'number' AND (message ->> 'step_id') ~ '^[0-9]{1,18}$'
                THEN (message ->> 'step_id')::bigint END
$fn$;
