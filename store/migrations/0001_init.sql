-- 0001: migration bookkeeping. deploy/stack.py applies store/migrations/*.sql in name order, each once,
-- each in its own transaction, and records the file's stem (e.g. "0001_init") in schema_migrations.
-- Add NNNN_description.sql files; never edit one that has been applied.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
