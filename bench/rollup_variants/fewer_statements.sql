-- 0011's row triggers with fewer statements per row (its functions and owner trigger, installed over 0011's triggers by `bench/rollup_trigger_bench.py --install`; tried on branch pgcpu, not kept; docs/performance.md)
BEGIN;
CREATE OR REPLACE FUNCTION analytics_instance_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was  boolean := TG_OP <> 'INSERT';   -- OLD counts (an UPDATE or a DELETE)
    is_  boolean := TG_OP <> 'DELETE';   -- NEW counts (an INSERT or an UPDATE)
    was_finished boolean := was AND OLD.status IN ('COMPLETED', 'FAILED') AND OLD.completed_at IS NOT NULL;
    is_finished  boolean := is_ AND NEW.status IN ('COMPLETED', 'FAILED') AND NEW.completed_at IS NOT NULL;
BEGIN
    IF NOT (was AND is_ AND (OLD.tenant_id, OLD.template_id, date_trunc('hour', OLD.created_at, 'UTC'), OLD.status)
            IS NOT DISTINCT FROM (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.created_at, 'UTC'), NEW.status))
    THEN
        INSERT INTO analytics_instance_counts AS c (tenant_id, template_id, hour, status, n)
        SELECT t, tp, h, s, sum(d)
        FROM (VALUES (OLD.tenant_id, OLD.template_id, date_trunc('hour', OLD.created_at, 'UTC'), OLD.status, -1, was),
                     (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.created_at, 'UTC'), NEW.status, 1, is_))
             AS v(t, tp, h, s, d, keep)
        WHERE keep GROUP BY t, tp, h, s
        ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    IF (was_finished OR is_finished) AND NOT (was_finished AND is_finished
            AND (OLD.tenant_id, OLD.template_id, date_trunc('hour', OLD.completed_at, 'UTC'), OLD.status)
                IS NOT DISTINCT FROM (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.completed_at, 'UTC'),
                                      NEW.status))
    THEN
        INSERT INTO analytics_finished_hourly AS f (tenant_id, template_id, hour, status, n)
        SELECT t, tp, h, s, sum(d)
        FROM (VALUES (OLD.tenant_id, OLD.template_id, date_trunc('hour', OLD.completed_at, 'UTC'), OLD.status, -1,
                      was_finished),
                     (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.completed_at, 'UTC'), NEW.status, 1,
                      is_finished))
             AS v(t, tp, h, s, d, keep)
        WHERE keep GROUP BY t, tp, h, s
        ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = f.n + EXCLUDED.n;
    END IF;
    IF is_ AND NEW.status = 'COMPLETED' THEN
        INSERT INTO analytics_completions AS a (instance_id, tenant_id, template_id, created_at, seconds)
        VALUES (NEW.id, NEW.tenant_id, NEW.template_id, NEW.created_at,
                extract(epoch FROM NEW.completed_at - NEW.created_at))
        ON CONFLICT (instance_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, template_id = EXCLUDED.template_id,
            created_at = EXCLUDED.created_at, seconds = EXCLUDED.seconds;
    END IF;
    IF was AND OLD.status = 'COMPLETED' AND NOT (is_ AND NEW.status = 'COMPLETED' AND NEW.id = OLD.id) THEN
        DELETE FROM analytics_completions WHERE instance_id = OLD.id;
    END IF;
    IF TG_OP = 'DELETE' THEN
        -- its step executions go with it (a step row without its instance counted nowhere before either)
        DELETE FROM workflow_step_executions WHERE instance_id = OLD.id;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION analytics_step_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was  boolean := TG_OP <> 'INSERT' AND OLD.tenant_id IS NOT NULL;
    is_  boolean := TG_OP <> 'DELETE' AND NEW.tenant_id IS NOT NULL;
    -- only an ended approval step execution has rows in the two approval tables
    had_approval boolean := was AND OLD.type = 'approval' AND OLD.ended_at IS NOT NULL;
    has_approval boolean := is_ AND NEW.type = 'approval' AND NEW.ended_at IS NOT NULL;
BEGIN
    IF was OR is_ THEN
        -- one group (an update that keeps its hour and step: only the time and the name can move) or two
        INSERT INTO analytics_step_hourly AS h (tenant_id, template_id, hour, step, name, executions, timed, seconds)
        SELECT t, tp, hr, st, coalesce(max(nm) FILTER (WHERE d > 0), ''), sum(d), sum(d * tm),
               coalesce(sum(d * secs), 0)
        FROM (VALUES (OLD.tenant_id, OLD.template_id, date_trunc('hour', OLD.instance_created_at, 'UTC'), OLD.step,
                      OLD.name, -1, (OLD.started_at IS NOT NULL AND OLD.ended_at IS NOT NULL)::int,
                      extract(epoch FROM OLD.ended_at - OLD.started_at), was),
                     (NEW.tenant_id, NEW.template_id, date_trunc('hour', NEW.instance_created_at, 'UTC'), NEW.step,
                      NEW.name, 1, (NEW.started_at IS NOT NULL AND NEW.ended_at IS NOT NULL)::int,
                      extract(epoch FROM NEW.ended_at - NEW.started_at), is_))
             AS v(t, tp, hr, st, nm, d, tm, secs, keep)
        WHERE keep GROUP BY t, tp, hr, st
        -- a group only an old row left keeps its name (GREATEST with the smallest text), as 0011's UPDATE did
        ON CONFLICT (tenant_id, template_id, hour, step) DO UPDATE
           SET executions = h.executions + EXCLUDED.executions, timed = h.timed + EXCLUDED.timed,
               seconds = h.seconds + EXCLUDED.seconds, name = GREATEST(h.name, EXCLUDED.name);
    END IF;
    IF had_approval THEN
        DELETE FROM analytics_approval_steps
         WHERE instance_id = OLD.instance_id AND step = OLD.step AND attempt = OLD.attempt;
        DELETE FROM analytics_approver_decisions
         WHERE instance_id = OLD.instance_id AND step = OLD.step AND attempt = OLD.attempt;
    END IF;
    IF has_approval THEN
        WITH steps AS (
            INSERT INTO analytics_approval_steps AS a (instance_id, step, attempt, tenant_id, template_id, created_at,
                                                       status, seconds)
            VALUES (NEW.instance_id, NEW.step, NEW.attempt, NEW.tenant_id, NEW.template_id, NEW.instance_created_at,
                    NEW.status, extract(epoch FROM NEW.ended_at - NEW.started_at))
            ON CONFLICT (instance_id, step, attempt) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
                template_id = EXCLUDED.template_id, created_at = EXCLUDED.created_at, status = EXCLUDED.status,
                seconds = EXCLUDED.seconds
        )
        INSERT INTO analytics_approver_decisions (instance_id, step, attempt, approver, tenant_id, template_id,
                                                  created_at, seconds)
        SELECT NEW.instance_id, NEW.step, NEW.attempt, a, NEW.tenant_id, NEW.template_id,
               NEW.instance_created_at, extract(epoch FROM NEW.ended_at - NEW.started_at)
        FROM unnest(NEW.approved_by) AS a
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS analytics_step_owner ON workflow_step_executions;
CREATE TRIGGER analytics_step_owner BEFORE INSERT OR UPDATE ON workflow_step_executions FOR EACH ROW
    WHEN (NEW.tenant_id IS NULL OR NEW.template_id IS NULL OR NEW.instance_created_at IS NULL)
    EXECUTE FUNCTION analytics_step_owner();
COMMIT;
