-- Why a text cannot be a concurrency key ('' when it can): ConcurrencyKeyProblem.
SELECT coalesce(tasker._concurrency_key_problem($1::text), '')
