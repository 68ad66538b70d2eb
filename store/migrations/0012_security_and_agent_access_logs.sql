-- 0012: the security log (issue 10 residual) and the agents' access log (issue 14 residual).
--
-- A command sent by an actor of one tenant to another tenant's instance is refused by the engine outside
-- that instance's sequence (CommandRejected with seq 0 and the actor's tenant, core/decide.py `_foreign`):
-- an attacker must not be able to write into another tenant's audit trail. The projector records the
-- attempt here instead, under the actor's own tenant, so that tenant's administrators see what their
-- principal tried; the victim's instance keeps no trace of it (the gateway answers 404 as for an unknown
-- id, so the attacker learns nothing either).
CREATE TABLE IF NOT EXISTS security_log (
    command_id    text        PRIMARY KEY,
    tenant_id     text        NOT NULL,  -- the actor's tenant, never the instance's
    actor_id      text        NOT NULL,
    kind          text        NOT NULL,  -- what happened: 'cross_tenant_command'
    command_type  text        NOT NULL,
    instance_id   text        NOT NULL,
    reason        text        NOT NULL,
    at            timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS security_log_tenant ON security_log (tenant_id, at DESC);

-- Every API call an agent makes (its principal's kind is 'agent'), reads included: MCP tools are API calls
-- with the agent's token, so this is where "which payment data did the agent look at, in which
-- conversation" is answered. Commands are in the instances' audit trail already; reads change nothing and
-- leave no other trace. The gateway writes one row per request before it answers (gateway/agent_access.py);
-- an admin reads it at GET /v1/agents/{id}/access-log.
CREATE TABLE IF NOT EXISTS agent_access_log (
    id              bigserial   PRIMARY KEY,
    tenant_id       text        NOT NULL,
    agent_id        text        NOT NULL,
    operation       text        NOT NULL,  -- the OpenAPI operationId, e.g. getInstance
    method          text        NOT NULL,
    path            text        NOT NULL,
    status          integer     NOT NULL,
    conversation_id text,
    client          text,                  -- User-Agent, e.g. flowline-mcp/0.1.0
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_access_log_agent ON agent_access_log (tenant_id, agent_id, at DESC, id DESC);
