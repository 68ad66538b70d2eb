-- 0011: what Analytics reads, kept as the read model is written (issue 12, ADR 12).
--
-- getAnalytics and the throughput endpoint aggregated every instance and step execution of a tenant on each
-- request (0.4-1.3 s with 100,000 instances). These tables hold the same answers, maintained by triggers in
-- the very transaction that writes the rows they summarise (the projector's batch, or any other writer), so
-- they can never disagree with the read model, and backfilled below from the rows already there:
--
-- analytics_instance_counts  instances per tenant, template, UTC hour of creation and status (counters)
-- analytics_finished_hourly  COMPLETED and FAILED instances per tenant, template and UTC hour they ended
-- analytics_step_hourly      step executions per tenant, template, UTC hour of the instance's creation and
--                            step: how many, how many have a duration, the sum of those durations
-- analytics_completions      one narrow row per COMPLETED instance with its completion time in seconds
-- analytics_approval_steps   one narrow row per ended approval step execution: status and seconds
-- analytics_approver_decisions  one narrow row per approver of an ended approval step execution
--
-- The last two keep every value, so percentiles stay exact (percentile_cont over a narrow indexed table
-- instead of over the wide read-model rows and a join). Hours are UTC; a `created_after` that falls inside
-- an hour reads that partial hour from the read model itself (gateway/operations.py).
--
-- workflow_step_executions also gets the instance's tenant_id, template_id and created_at (filled from the
-- instance when a writer does not give them), so no analytics read joins the instances any more.

LOCK TABLE workflow_instances, workflow_step_executions IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE workflow_step_executions ADD COLUMN IF NOT EXISTS tenant_id text;
ALTER TABLE workflow_step_executions ADD COLUMN IF NOT EXISTS template_id text;
ALTER TABLE workflow_step_executions ADD COLUMN IF NOT EXISTS instance_created_at timestamptz;

CREATE TABLE IF NOT EXISTS analytics_instance_counts (
    tenant_id   text        NOT NULL,
    template_id text        NOT NULL,
    hour        timestamptz NOT NULL,
    status      text        NOT NULL,
    n           bigint      NOT NULL,
    PRIMARY KEY (tenant_id, template_id, hour, status)
);

CREATE TABLE IF NOT EXISTS analytics_finished_hourly (
    tenant_id   text        NOT NULL,
    template_id text        NOT NULL,
    hour        timestamptz NOT NULL,              -- of completed_at
    status      text        NOT NULL,              -- COMPLETED | FAILED
    n           bigint      NOT NULL,
    PRIMARY KEY (tenant_id, template_id, hour, status)
);

CREATE TABLE IF NOT EXISTS analytics_step_hourly (
    tenant_id   text        NOT NULL,
    template_id text        NOT NULL,
    hour        timestamptz NOT NULL,
    step        integer     NOT NULL,
    name        text        NOT NULL DEFAULT '',
    executions  bigint      NOT NULL,
    timed       bigint      NOT NULL,              -- executions with started_at and ended_at
    seconds     numeric     NOT NULL,              -- sum of their durations
    PRIMARY KEY (tenant_id, template_id, hour, step)
);

CREATE TABLE IF NOT EXISTS analytics_completions (
    instance_id text        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    template_id text        NOT NULL,
    created_at  timestamptz NOT NULL,
    seconds     double precision                    -- NULL when completed_at is unknown
);
CREATE INDEX IF NOT EXISTS analytics_completions_tenant ON analytics_completions (tenant_id, template_id, created_at);

CREATE TABLE IF NOT EXISTS analytics_approval_steps (
    instance_id text        NOT NULL,
    step        integer     NOT NULL,
    attempt     integer     NOT NULL,
    tenant_id   text        NOT NULL,
    template_id text        NOT NULL,
    created_at  timestamptz NOT NULL,              -- the instance's
    status      text        NOT NULL,
    seconds     double precision,                  -- NULL when started_at is unknown
    PRIMARY KEY (instance_id, step, attempt)
);
CREATE INDEX IF NOT EXISTS analytics_approval_steps_tenant ON analytics_approval_steps (tenant_id, created_at);

CREATE TABLE IF NOT EXISTS analytics_approver_decisions (
    instance_id text        NOT NULL,
    step        integer     NOT NULL,
    attempt     integer     NOT NULL,
    approver    text        NOT NULL,
    tenant_id   text        NOT NULL,
    template_id text        NOT NULL,
    created_at  timestamptz NOT NULL,              -- the instance's
    seconds     double precision,
    PRIMARY KEY (instance_id, step, attempt, approver)
);
CREATE INDEX IF NOT EXISTS analytics_approver_decisions_tenant
    ON analytics_approver_decisions (tenant_id, approver, created_at) INCLUDE (template_id, seconds);

-- ------------------------------------------------------------------------------------------- backfill

-- The rollups of the rows already there (all tenants, or one), computed set-wise: the migration's backfill,
-- and what a bulk loader calls after writing rows with the triggers off (bench/dashboard_bench.py), since a
-- row trigger per bulk-inserted row updates the same counters over and over in one transaction.
CREATE OR REPLACE FUNCTION analytics_backfill(only_tenant text DEFAULT NULL) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
UPDATE workflow_step_executions s SET tenant_id = i.tenant_id, template_id = i.template_id,
    instance_created_at = i.created_at
FROM workflow_instances i
WHERE i.id = s.instance_id AND s.tenant_id IS NULL AND (only_tenant IS NULL OR i.tenant_id = only_tenant);

INSERT INTO analytics_instance_counts (tenant_id, template_id, hour, status, n)
SELECT tenant_id, template_id, date_trunc('hour', created_at, 'UTC'), status, count(*)
FROM workflow_instances WHERE only_tenant IS NULL OR tenant_id = only_tenant GROUP BY 1, 2, 3, 4
ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = analytics_instance_counts.n + EXCLUDED.n;

INSERT INTO analytics_finished_hourly (tenant_id, template_id, hour, status, n)
SELECT tenant_id, template_id, date_trunc('hour', completed_at, 'UTC'), status, count(*)
FROM workflow_instances
WHERE status IN ('COMPLETED', 'FAILED') AND completed_at IS NOT NULL AND (only_tenant IS NULL OR tenant_id = only_tenant)
GROUP BY 1, 2, 3, 4
ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = analytics_finished_hourly.n + EXCLUDED.n;

INSERT INTO analytics_completions (instance_id, tenant_id, template_id, created_at, seconds)
SELECT id, tenant_id, template_id, created_at, extract(epoch FROM completed_at - created_at)
FROM workflow_instances WHERE status = 'COMPLETED' AND (only_tenant IS NULL OR tenant_id = only_tenant)
ON CONFLICT (instance_id) DO NOTHING;

INSERT INTO analytics_step_hourly (tenant_id, template_id, hour, step, name, executions, timed, seconds)
SELECT tenant_id, template_id, date_trunc('hour', instance_created_at, 'UTC'), step, max(name), count(*),
       count(*) FILTER (WHERE started_at IS NOT NULL AND ended_at IS NOT NULL),
       coalesce(sum(extract(epoch FROM ended_at - started_at)), 0)
FROM workflow_step_executions WHERE tenant_id IS NOT NULL AND (only_tenant IS NULL OR tenant_id = only_tenant)
GROUP BY 1, 2, 3, 4
ON CONFLICT (tenant_id, template_id, hour, step) DO UPDATE
   SET executions = analytics_step_hourly.executions + EXCLUDED.executions,
       timed = analytics_step_hourly.timed + EXCLUDED.timed,
       seconds = analytics_step_hourly.seconds + EXCLUDED.seconds,
       name = GREATEST(analytics_step_hourly.name, EXCLUDED.name);

INSERT INTO analytics_approval_steps (instance_id, step, attempt, tenant_id, template_id, created_at, status, seconds)
SELECT instance_id, step, attempt, tenant_id, template_id, instance_created_at, status,
       extract(epoch FROM ended_at - started_at)
FROM workflow_step_executions
WHERE tenant_id IS NOT NULL AND type = 'approval' AND ended_at IS NOT NULL
  AND (only_tenant IS NULL OR tenant_id = only_tenant)
ON CONFLICT (instance_id, step, attempt) DO NOTHING;

INSERT INTO analytics_approver_decisions (instance_id, step, attempt, approver, tenant_id, template_id, created_at,
                                          seconds)
SELECT s.instance_id, s.step, s.attempt, a, s.tenant_id, s.template_id, s.instance_created_at,
       extract(epoch FROM s.ended_at - s.started_at)
FROM workflow_step_executions s CROSS JOIN LATERAL unnest(s.approved_by) AS a
WHERE s.tenant_id IS NOT NULL AND s.type = 'approval' AND s.ended_at IS NOT NULL
  AND (only_tenant IS NULL OR s.tenant_id = only_tenant)
ON CONFLICT DO NOTHING;
END $$;

-- before the triggers exist (the backfill's own UPDATE must not count the steps a second time), with both
-- tables locked against writers until the triggers are in place (nothing written in between is missed)
SELECT analytics_backfill();

-- ------------------------------------------------------------------------------------------- triggers

CREATE OR REPLACE FUNCTION analytics_instance_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE analytics_instance_counts SET n = n - 1
         WHERE tenant_id = OLD.tenant_id AND template_id = OLD.template_id
           AND hour = date_trunc('hour', OLD.created_at, 'UTC') AND status = OLD.status;
        IF OLD.status = 'COMPLETED' THEN
            DELETE FROM analytics_completions WHERE instance_id = OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN
            -- its step executions go with it (a step row without its instance counted nowhere before either)
            DELETE FROM workflow_step_executions WHERE instance_id = OLD.id;
        END IF;
        IF OLD.status IN ('COMPLETED', 'FAILED') AND OLD.completed_at IS NOT NULL THEN
            UPDATE analytics_finished_hourly SET n = n - 1
             WHERE tenant_id = OLD.tenant_id AND template_id = OLD.template_id
               AND hour = date_trunc('hour', OLD.completed_at, 'UTC') AND status = OLD.status;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO analytics_instance_counts (tenant_id, template_id, hour, status, n)
        VALUES (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.created_at, 'UTC'), NEW.status, 1)
        ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = analytics_instance_counts.n + 1;
        IF NEW.status = 'COMPLETED' THEN
            INSERT INTO analytics_completions (instance_id, tenant_id, template_id, created_at, seconds)
            VALUES (NEW.id, NEW.tenant_id, NEW.template_id, NEW.created_at,
                    extract(epoch FROM NEW.completed_at - NEW.created_at))
            ON CONFLICT (instance_id) DO UPDATE SET seconds = EXCLUDED.seconds;
        END IF;
        IF NEW.status IN ('COMPLETED', 'FAILED') AND NEW.completed_at IS NOT NULL THEN
            INSERT INTO analytics_finished_hourly (tenant_id, template_id, hour, status, n)
            VALUES (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.completed_at, 'UTC'), NEW.status, 1)
            ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = analytics_finished_hourly.n + 1;
        END IF;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS analytics_instance_written ON workflow_instances;
CREATE TRIGGER analytics_instance_written AFTER INSERT OR DELETE ON workflow_instances
    FOR EACH ROW EXECUTE FUNCTION analytics_instance_changed();
DROP TRIGGER IF EXISTS analytics_instance_updated ON workflow_instances;
CREATE TRIGGER analytics_instance_updated AFTER UPDATE ON workflow_instances FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.completed_at IS DISTINCT FROM NEW.completed_at
          OR OLD.created_at IS DISTINCT FROM NEW.created_at OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.template_id IS DISTINCT FROM NEW.template_id)
    EXECUTE FUNCTION analytics_instance_changed();

-- a step row carries its instance's tenant, template and creation time (looked up when the writer omits them)
CREATE OR REPLACE FUNCTION analytics_step_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant_id IS NULL OR NEW.template_id IS NULL OR NEW.instance_created_at IS NULL THEN
        SELECT i.tenant_id, i.template_id, i.created_at INTO NEW.tenant_id, NEW.template_id, NEW.instance_created_at
          FROM workflow_instances i WHERE i.id = NEW.instance_id;
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS analytics_step_owner ON workflow_step_executions;
CREATE TRIGGER analytics_step_owner BEFORE INSERT OR UPDATE ON workflow_step_executions
    FOR EACH ROW EXECUTE FUNCTION analytics_step_owner();

CREATE OR REPLACE FUNCTION analytics_step_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.tenant_id IS NOT NULL THEN
        UPDATE analytics_step_hourly
           SET executions = executions - 1,
               timed = timed - (OLD.started_at IS NOT NULL AND OLD.ended_at IS NOT NULL)::int,
               seconds = seconds - coalesce(extract(epoch FROM OLD.ended_at - OLD.started_at), 0)
         WHERE tenant_id = OLD.tenant_id AND template_id = OLD.template_id
           AND hour = date_trunc('hour', OLD.instance_created_at, 'UTC') AND step = OLD.step;
        DELETE FROM analytics_approval_steps
         WHERE instance_id = OLD.instance_id AND step = OLD.step AND attempt = OLD.attempt;
        DELETE FROM analytics_approver_decisions
         WHERE instance_id = OLD.instance_id AND step = OLD.step AND attempt = OLD.attempt;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.tenant_id IS NOT NULL THEN
        INSERT INTO analytics_step_hourly (tenant_id, template_id, hour, step, name, executions, timed, seconds)
        VALUES (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.instance_created_at, 'UTC'), NEW.step,
                NEW.name, 1, (NEW.started_at IS NOT NULL AND NEW.ended_at IS NOT NULL)::int,
                coalesce(extract(epoch FROM NEW.ended_at - NEW.started_at), 0))
        ON CONFLICT (tenant_id, template_id, hour, step) DO UPDATE
           SET executions = analytics_step_hourly.executions + 1,
               timed = analytics_step_hourly.timed + EXCLUDED.timed,
               seconds = analytics_step_hourly.seconds + EXCLUDED.seconds,
               name = GREATEST(analytics_step_hourly.name, EXCLUDED.name);
        IF NEW.type = 'approval' AND NEW.ended_at IS NOT NULL THEN
            INSERT INTO analytics_approval_steps (instance_id, step, attempt, tenant_id, template_id, created_at,
                                                  status, seconds)
            VALUES (NEW.instance_id, NEW.step, NEW.attempt, NEW.tenant_id, NEW.template_id,
                    NEW.instance_created_at, NEW.status, extract(epoch FROM NEW.ended_at - NEW.started_at));
            INSERT INTO analytics_approver_decisions (instance_id, step, attempt, approver, tenant_id, template_id,
                                                      created_at, seconds)
            SELECT NEW.instance_id, NEW.step, NEW.attempt, a, NEW.tenant_id, NEW.template_id,
                   NEW.instance_created_at, extract(epoch FROM NEW.ended_at - NEW.started_at)
            FROM unnest(NEW.approved_by) AS a
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS analytics_step_written ON workflow_step_executions;
CREATE TRIGGER analytics_step_written AFTER INSERT OR DELETE ON workflow_step_executions
    FOR EACH ROW EXECUTE FUNCTION analytics_step_changed();
DROP TRIGGER IF EXISTS analytics_step_updated ON workflow_step_executions;
CREATE TRIGGER analytics_step_updated AFTER UPDATE ON workflow_step_executions FOR EACH ROW
    WHEN (OLD.started_at IS DISTINCT FROM NEW.started_at OR OLD.ended_at IS DISTINCT FROM NEW.ended_at
          OR OLD.status IS DISTINCT FROM NEW.status OR OLD.type IS DISTINCT FROM NEW.type
          OR OLD.name IS DISTINCT FROM NEW.name OR OLD.approved_by IS DISTINCT FROM NEW.approved_by
          OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION analytics_step_changed();

