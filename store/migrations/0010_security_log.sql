-- 0010: the security log (issue 10 residual).
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
