-- per statement over transition tables: what migration 0014 installs (0014 replaces 0011's row triggers)
BEGIN;
DROP TRIGGER IF EXISTS analytics_instance_updated ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instance_written ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instances_deleted ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instances_inserted ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instances_updated ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_step_owner ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_step_updated ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_step_written ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_deleted ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_inserted ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_updated ON workflow_step_executions;
DO $migration$
DECLARE
    -- %1$s: the rows that went, %2$s: the rows that came (each a relation of the table's row type)
    instances CONSTANT text := $sql$
WITH
gone AS (
    SELECT id, tenant_id, template_id, status, created_at, completed_at FROM %1$s
    EXCEPT ALL SELECT id, tenant_id, template_id, status, created_at, completed_at FROM %2$s
),
came AS (
    SELECT id, tenant_id, template_id, status, created_at, completed_at FROM %2$s
    EXCEPT ALL SELECT id, tenant_id, template_id, status, created_at, completed_at FROM %1$s
),
moves AS (
    SELECT *, 1 AS d FROM came UNION ALL SELECT *, -1 AS d FROM gone
),
counts AS (
    INSERT INTO analytics_instance_counts AS c (tenant_id, template_id, hour, status, n)
    SELECT tenant_id, template_id, date_trunc('hour', created_at, 'UTC'), status, sum(d)
    FROM moves GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0
    ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = c.n + EXCLUDED.n
),
finished AS (
    INSERT INTO analytics_finished_hourly AS f (tenant_id, template_id, hour, status, n)
    SELECT tenant_id, template_id, date_trunc('hour', completed_at, 'UTC'), status, sum(d)
    FROM moves WHERE status IN ('COMPLETED', 'FAILED') AND completed_at IS NOT NULL
    GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0
    ON CONFLICT (tenant_id, template_id, hour, status) DO UPDATE SET n = f.n + EXCLUDED.n
),
uncompleted AS (
    DELETE FROM analytics_completions
    WHERE instance_id IN (SELECT id FROM gone WHERE status = 'COMPLETED')
      AND instance_id NOT IN (SELECT id FROM came WHERE status = 'COMPLETED')
),
completed AS (
    INSERT INTO analytics_completions AS a (instance_id, tenant_id, template_id, created_at, seconds)
    SELECT id, tenant_id, template_id, created_at, extract(epoch FROM completed_at - created_at)
    FROM came WHERE status = 'COMPLETED'
    ON CONFLICT (instance_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, template_id = EXCLUDED.template_id,
        created_at = EXCLUDED.created_at, seconds = EXCLUDED.seconds
)
SELECT 1$sql$;

    steps CONSTANT text := $sql$
WITH
gone AS (
    SELECT instance_id, step, attempt, tenant_id, template_id, instance_created_at, name, type, status, started_at,
           ended_at, approved_by FROM %1$s WHERE tenant_id IS NOT NULL
    EXCEPT ALL
    SELECT instance_id, step, attempt, tenant_id, template_id, instance_created_at, name, type, status, started_at,
           ended_at, approved_by FROM %2$s WHERE tenant_id IS NOT NULL
),
came AS (
    SELECT instance_id, step, attempt, tenant_id, template_id, instance_created_at, name, type, status, started_at,
           ended_at, approved_by FROM %2$s WHERE tenant_id IS NOT NULL
    EXCEPT ALL
    SELECT instance_id, step, attempt, tenant_id, template_id, instance_created_at, name, type, status, started_at,
           ended_at, approved_by FROM %1$s WHERE tenant_id IS NOT NULL
),
moves AS (
    SELECT *, 1 AS d FROM came UNION ALL SELECT *, -1 AS d FROM gone
),
hourly AS (
    -- a group only rows went from keeps its name (GREATEST with the smallest text)
    INSERT INTO analytics_step_hourly AS h (tenant_id, template_id, hour, step, name, executions, timed, seconds)
    SELECT tenant_id, template_id, date_trunc('hour', instance_created_at, 'UTC'), step,
           coalesce(max(name) FILTER (WHERE d > 0), ''), sum(d),
           sum(d * (started_at IS NOT NULL AND ended_at IS NOT NULL)::int),
           coalesce(sum(d * extract(epoch FROM ended_at - started_at)), 0)
    FROM moves GROUP BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, template_id, hour, step) DO UPDATE
       SET executions = h.executions + EXCLUDED.executions, timed = h.timed + EXCLUDED.timed,
           seconds = h.seconds + EXCLUDED.seconds, name = GREATEST(h.name, EXCLUDED.name)
),
ended AS (
    -- the approval step executions that came ended; of those that went, the keys not among them lose their rows
    SELECT * FROM came WHERE type = 'approval' AND ended_at IS NOT NULL
),
unended AS (
    DELETE FROM analytics_approval_steps a USING gone g
    WHERE a.instance_id = g.instance_id AND a.step = g.step AND a.attempt = g.attempt
      AND NOT EXISTS (SELECT 1 FROM ended e
                      WHERE e.instance_id = g.instance_id AND e.step = g.step AND e.attempt = g.attempt)
),
approvals AS (
    INSERT INTO analytics_approval_steps AS a (instance_id, step, attempt, tenant_id, template_id, created_at,
                                               status, seconds)
    SELECT instance_id, step, attempt, tenant_id, template_id, instance_created_at, status,
           extract(epoch FROM ended_at - started_at)
    FROM ended
    ON CONFLICT (instance_id, step, attempt) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
        template_id = EXCLUDED.template_id, created_at = EXCLUDED.created_at, status = EXCLUDED.status,
        seconds = EXCLUDED.seconds
),
deciders AS (
    SELECT DISTINCT e.instance_id, e.step, e.attempt, x.approver, e.tenant_id, e.template_id,
           e.instance_created_at, extract(epoch FROM e.ended_at - e.started_at) AS seconds
    FROM ended e CROSS JOIN LATERAL unnest(e.approved_by) AS x(approver)
),
undecided AS (
    DELETE FROM analytics_approver_decisions a USING gone g
    WHERE a.instance_id = g.instance_id AND a.step = g.step AND a.attempt = g.attempt
      AND NOT EXISTS (SELECT 1 FROM deciders k WHERE k.instance_id = a.instance_id AND k.step = a.step
                      AND k.attempt = a.attempt AND k.approver = a.approver)
),
decided AS (
    INSERT INTO analytics_approver_decisions AS a (instance_id, step, attempt, approver, tenant_id, template_id,
                                                   created_at, seconds)
    SELECT * FROM deciders
    ON CONFLICT (instance_id, step, attempt, approver) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
        template_id = EXCLUDED.template_id, created_at = EXCLUDED.created_at, seconds = EXCLUDED.seconds
)
SELECT 1$sql$;

    made RECORD;
BEGIN
    FOR made IN
        SELECT * FROM (VALUES
            ('analytics_instances_inserted', instances, '(SELECT * FROM workflow_instances WHERE false)', 'came_rows', ''),
            ('analytics_instances_updated', instances, 'went_rows', 'came_rows', ''),
            -- a deleted instance's step executions go with it (0011: a step row without its instance counted
            -- nowhere before either); their own trigger takes them out of the rollups
            ('analytics_instances_deleted', instances, 'went_rows', '(SELECT * FROM workflow_instances WHERE false)',
             'DELETE FROM workflow_step_executions WHERE instance_id IN (SELECT id FROM went_rows);'),
            ('analytics_steps_inserted', steps, '(SELECT * FROM workflow_step_executions WHERE false)', 'came_rows', ''),
            ('analytics_steps_updated', steps, 'went_rows', 'came_rows', ''),
            ('analytics_steps_deleted', steps, 'went_rows', '(SELECT * FROM workflow_step_executions WHERE false)', '')
        ) AS t(fn, template, went, came, extra)
    LOOP
        EXECUTE format('CREATE OR REPLACE FUNCTION %I() RETURNS trigger LANGUAGE plpgsql AS %L', made.fn,
                       format(E'DECLARE done int;\nBEGIN\n%s\n%s INTO done;\nRETURN NULL;\nEND',
                              made.extra, format(made.template, made.went, made.came)));
    END LOOP;
END
$migration$;

CREATE TRIGGER analytics_instances_inserted AFTER INSERT ON workflow_instances
    REFERENCING NEW TABLE AS came_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_instances_inserted();
CREATE TRIGGER analytics_instances_updated AFTER UPDATE ON workflow_instances
    REFERENCING OLD TABLE AS went_rows NEW TABLE AS came_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_instances_updated();
CREATE TRIGGER analytics_instances_deleted AFTER DELETE ON workflow_instances
    REFERENCING OLD TABLE AS went_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_instances_deleted();
CREATE TRIGGER analytics_steps_inserted AFTER INSERT ON workflow_step_executions
    REFERENCING NEW TABLE AS came_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_steps_inserted();
CREATE TRIGGER analytics_steps_updated AFTER UPDATE ON workflow_step_executions
    REFERENCING OLD TABLE AS went_rows NEW TABLE AS came_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_steps_updated();
CREATE TRIGGER analytics_steps_deleted AFTER DELETE ON workflow_step_executions
    REFERENCING OLD TABLE AS went_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_steps_deleted();
CREATE TRIGGER analytics_step_owner BEFORE INSERT OR UPDATE ON workflow_step_executions FOR EACH ROW
    WHEN (NEW.tenant_id IS NULL OR NEW.template_id IS NULL OR NEW.instance_created_at IS NULL)
    EXECUTE FUNCTION analytics_step_owner();
COMMIT;
