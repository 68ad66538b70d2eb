-- 0008: bounded agents (story 29.12, issue 14).
--
-- principals.public_key: an agent's Ed25519 public key (base64 of the 32 raw bytes); the gateway checks
-- each decision's agent_signature against it (core/agent_signing.py) and the audit entry records
-- verified / absent.
ALTER TABLE principals ADD COLUMN IF NOT EXISTS public_key text;

-- The cross-instance half of an agent's daily_budget. The engine judges one instance at a time, so it
-- cannot see what the agent approved elsewhere today; the gateway reserves the amount here with one atomic
-- UPDATE ... WHERE used + amount <= budget before it sends the decision, and releases it if the engine
-- refuses the decision. Days are UTC.
CREATE TABLE IF NOT EXISTS agent_daily_budget_usage (
    agent_id  text             NOT NULL,
    day       date             NOT NULL,
    used      double precision NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (agent_id, day)
);

-- Follow one agent conversation across instances: GET /v1/workflows/instances?conversation_id=...
ALTER TABLE workflow_instances ADD COLUMN IF NOT EXISTS conversation_id text
    GENERATED ALWAYS AS (agent_context ->> 'conversation_id') STORED;
CREATE INDEX IF NOT EXISTS workflow_instances_conversation
    ON workflow_instances (tenant_id, conversation_id, created_at DESC) WHERE conversation_id IS NOT NULL;

-- The agents' recommendations on the open step (AgentRecommendation events: an agent above its limit, or
-- one whose approvals do not count), shown to the human approvers in their pending list.
ALTER TABLE workflow_pending_approvals ADD COLUMN IF NOT EXISTS recommendations jsonb NOT NULL DEFAULT '[]';
