-- 0004: the gateway's configuration tables and the projector's read model (issue 6).
--
-- Configuration (system of record, written by the gateway): templates and their versions, API tokens
-- (sha256 hashes only), agent workflow permissions (story 29.12), idempotency keys.
-- Read model (written only by store/projector.py from workflow.events): instances, step executions,
-- transitions (the audit log, one row per event), pending approvals, rejected commands, projector status.
-- Principals live in 0003_principals.sql. Times are timestamptz; engine times (epoch ms) are converted.

CREATE TABLE IF NOT EXISTS workflow_templates (
    id              text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    name            text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    trigger_type    text        NOT NULL,
    status          text        NOT NULL DEFAULT 'ACTIVE',   -- ACTIVE | DRAFT | PAUSED (deactivated)
    current_version integer     NOT NULL DEFAULT 1,
    created_by      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workflow_templates_tenant ON workflow_templates (tenant_id, created_at DESC);

CREATE TABLE IF NOT EXISTS workflow_template_versions (
    template_id text        NOT NULL REFERENCES workflow_templates (id),
    version     integer     NOT NULL,
    document    jsonb       NOT NULL,
    created_by  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash   text        PRIMARY KEY,                  -- hex sha256 of the bearer token
    principal_id text        NOT NULL,
    name         text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS api_tokens_principal ON api_tokens (principal_id);

-- Story 29.12, adapted: ids are text, one row per (agent, template).
CREATE TABLE IF NOT EXISTS agent_workflow_permissions (
    agent_id            text        NOT NULL,
    tenant_id           text        NOT NULL,
    template_id         text        NOT NULL REFERENCES workflow_templates (id),
    can_initiate        boolean     NOT NULL DEFAULT false,
    can_approve         boolean     NOT NULL DEFAULT false,
    approval_conditions jsonb,                             -- {"max_amount": n|null, "step_names": [...]}
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, template_id)
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    principal_id  text        NOT NULL,
    key           text        NOT NULL,
    request_hash  text        NOT NULL,
    status        integer,                                 -- NULL while the first request is in flight
    content_type  text,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal_id, key)
);

-- ---------------------------------------------------------------------------------------- read model

CREATE TABLE IF NOT EXISTS workflow_instances (
    id                    text        PRIMARY KEY,
    tenant_id             text        NOT NULL,
    template_id           text        NOT NULL,
    template_version      integer     NOT NULL,
    template_name         text        NOT NULL DEFAULT '',
    status                text        NOT NULL,
    current_step          integer,
    current_step_name     text,
    step_count            integer     NOT NULL DEFAULT 0,
    trigger               jsonb,
    source                text        NOT NULL DEFAULT '',
    initiated_by          text        NOT NULL DEFAULT '',
    initiated_by_kind     text        NOT NULL DEFAULT 'system',
    initiated_by_agent_id text,
    agent_context         jsonb,
    blocking              jsonb,                           -- where it is and who/what it waits for
    steps_meta            jsonb       NOT NULL DEFAULT '[]', -- [{name, type}] per step number
    failure_reason        text        NOT NULL DEFAULT '',
    amount                double precision,                -- trigger.amount, for agent limits and filters
    state                 bytea,                           -- the projector's folded InstanceState (Avro)
    last_seq              integer     NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    completed_at          timestamptz
);
CREATE INDEX IF NOT EXISTS workflow_instances_tenant_created ON workflow_instances (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS workflow_instances_tenant_status ON workflow_instances (tenant_id, status);
CREATE INDEX IF NOT EXISTS workflow_instances_template ON workflow_instances (template_id);

CREATE TABLE IF NOT EXISTS workflow_step_executions (
    instance_id          text        NOT NULL,
    step                 integer     NOT NULL,
    attempt              integer     NOT NULL,
    name                 text        NOT NULL DEFAULT '',
    type                 text        NOT NULL DEFAULT '',
    status               text        NOT NULL,
    awaiting             text        NOT NULL DEFAULT '',
    started_at           timestamptz,
    ended_at             timestamptz,
    approvers            jsonb,
    required             integer     NOT NULL DEFAULT 0,
    votes                jsonb       NOT NULL DEFAULT '[]',
    approved_by          text[]      NOT NULL DEFAULT '{}',
    approved_by_agent_id text,
    agent_reasoning      text,
    output               jsonb,
    error                text        NOT NULL DEFAULT '',
    retries              integer     NOT NULL DEFAULT 0,
    external_request     jsonb,
    external_response    jsonb,
    -- no callback_token column: it is derived (core.signing.callback_token), never stored
    PRIMARY KEY (instance_id, step, attempt)
);

CREATE TABLE IF NOT EXISTS workflow_transitions (
    instance_id text        NOT NULL,
    seq         integer     NOT NULL,
    tenant_id   text        NOT NULL,
    event_type  text        NOT NULL,
    step        integer,
    command_id  text        NOT NULL DEFAULT '',
    actor_id    text        NOT NULL DEFAULT 'flowline',
    actor_kind  text        NOT NULL DEFAULT 'system',     -- human | agent | system
    reasoning   text        NOT NULL DEFAULT '',
    details     jsonb       NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE INDEX IF NOT EXISTS workflow_transitions_command ON workflow_transitions (command_id);

CREATE TABLE IF NOT EXISTS workflow_pending_approvals (
    instance_id     text        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    template_id     text        NOT NULL,
    step            integer     NOT NULL,
    attempt         integer     NOT NULL,
    step_name       text        NOT NULL DEFAULT '',
    kind            text        NOT NULL DEFAULT 'approval',  -- approval | review
    approvers       jsonb,
    approver_roles  text[]      NOT NULL DEFAULT '{}',
    approver_users  text[]      NOT NULL DEFAULT '{}',
    approver_agents text[]      NOT NULL DEFAULT '{}',
    required        integer     NOT NULL DEFAULT 1,
    approvals       integer     NOT NULL DEFAULT 0,
    decided_by      text[]      NOT NULL DEFAULT '{}',
    initiated_by    text        NOT NULL DEFAULT '',
    amount          double precision,
    deadline        timestamptz,
    requested_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS workflow_pending_tenant ON workflow_pending_approvals (tenant_id, requested_at);

-- Every CommandRejected, including the engine's seq-0 rejections for unknown instances/templates, so that
-- `?wait=true` can answer 409 with the reason.
CREATE TABLE IF NOT EXISTS workflow_rejected_commands (
    command_id   text        PRIMARY KEY,
    instance_id  text        NOT NULL,
    command_type text        NOT NULL,
    reason       text        NOT NULL,
    at           timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS projector_status (
    consumer_group text        PRIMARY KEY,
    lag            bigint      NOT NULL DEFAULT 0,
    events_applied bigint      NOT NULL DEFAULT 0,
    last_event_at  timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
