-- migration 0011's row triggers (before 0014; what the variants were compared with)
BEGIN;
DROP TRIGGER IF EXISTS analytics_instances_inserted ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instances_updated ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instances_deleted ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_steps_inserted ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_updated ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_deleted ON workflow_step_executions;
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

COMMIT;
