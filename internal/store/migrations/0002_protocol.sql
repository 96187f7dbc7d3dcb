-- 0002: created the worker protocol's and the operator actions' SQL functions. Functions no longer live in
-- migrations: each one's current text is in internal/store/functions (applied after the migrations whenever it
-- changes), so a database created today gets them from there. Nothing to change in the tables.
SELECT 1;
