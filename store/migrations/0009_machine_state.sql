-- 0008: state-machine templates (docs/state-machines.md): the state an instance is in, and a requested
-- transition waiting for its approval; NULL for step-list templates.
ALTER TABLE workflow_instances ADD COLUMN IF NOT EXISTS machine_state TEXT;
ALTER TABLE workflow_instances ADD COLUMN IF NOT EXISTS pending_transition TEXT;
