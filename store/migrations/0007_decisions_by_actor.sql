-- The dashboard's decision history (GET /v1/workflows/decisions): a principal's own votes, newest first,
-- without scanning every transition of the tenant.
CREATE INDEX IF NOT EXISTS workflow_transitions_decisions
    ON workflow_transitions (tenant_id, actor_id, at DESC) WHERE event_type = 'DecisionRecorded';
