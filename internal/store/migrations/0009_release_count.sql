-- 0009: steps count their releases (functions/release.sql): a step released over and over neither counted an
-- attempt nor ever stopped, and its history grew without bound. Past tasker.max_releases, a release counts as a
-- failed attempt.
ALTER TABLE tasker.steps ADD COLUMN releases integer NOT NULL DEFAULT 0;
