-- 0003: the directory of people and agents who can approve (shared by the approval handler and the
-- gateway), and the notices the approval handler delivered to them. Pending approvals and votes are the
-- projector's read model (0004).
--
-- principals: one row per human or agent. roles are matched by approver specs {"type":"role","value":"cfo"};
-- ids by {"type":"user"|"agent","value":...}. Keep this shape: the gateway resolves identities from it.
CREATE TABLE IF NOT EXISTS principals (
    id           text        PRIMARY KEY,
    tenant_id    text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('human', 'agent')),
    display_name text        NOT NULL DEFAULT '',
    email        text,
    webhook_url  text,
    roles        text[]      NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS principals_tenant ON principals (tenant_id);
CREATE INDEX IF NOT EXISTS principals_roles ON principals USING gin (roles);

-- Every notice sent to an approver, once per (request, principal, channel): a redelivered request skips
-- what was already delivered.
CREATE TABLE IF NOT EXISTS approval_notifications (
    request_id   text        NOT NULL,
    principal_id text        NOT NULL,
    channel      text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    instance_id  text        NOT NULL,
    step         integer     NOT NULL,
    escalation   integer     NOT NULL DEFAULT 0,
    notice       text        NOT NULL DEFAULT 'approval_requested',
    status       text        NOT NULL CHECK (status IN ('delivered', 'failed')),
    error        text        NOT NULL DEFAULT '',
    attempts     integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, principal_id, channel)
);
