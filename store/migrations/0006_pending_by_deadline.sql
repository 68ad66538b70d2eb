-- 0006: GET /v1/workflows/pending?sort=deadline pages by (deadline, instance_id) within a tenant (issue 9.4);
-- the default order pages by (requested_at, instance_id).
CREATE INDEX IF NOT EXISTS workflow_pending_tenant_deadline
    ON workflow_pending_approvals (tenant_id, (deadline IS NULL), deadline, instance_id);
CREATE INDEX IF NOT EXISTS workflow_pending_tenant_requested
    ON workflow_pending_approvals (tenant_id, requested_at, instance_id);
