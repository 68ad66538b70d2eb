-- 0014: the analytics rollups (0011, ADR 12) kept per statement instead of per row (issue 15).
--
-- 0011's triggers ran a PL/pgSQL function for every instance and step row a statement wrote, and each ran two to
-- four statements of its own (the old group's counter down, the new one's up, the narrow rows). These triggers
-- run once per written STATEMENT, over its transition tables, and do the same with one statement per trigger for
-- any number of rows: the projector's batch (one INSERT ... ON CONFLICT DO UPDATE per table) fires each table's
-- INSERT and UPDATE trigger once. What the rollups hold is unchanged, and they are still written in the very
-- statement's transaction, by whatever writes the read model.
--
-- Why now: a statement's plan nodes cost at every execution, rows or not, so this form costs more than 0011's at
-- one workflow a statement (twice as much) and less from somewhere between four and sixteen; since the projector
-- fetches in batches while busy (ADR 22) its statements are large enough: PostgreSQL's CPU per procurement
-- workflow fell 1.93 -> 1.69 ms at 16 in flight and 1.74 -> 1.51 ms in the open loop at 95 wf/s
-- (docs/performance.md, "The analytics triggers and the approval handler's mail").
--
-- How a statement's rows become changes: `gone` are the old rows (the rows an UPDATE replaced, the rows a DELETE
-- removed) and `came` the new ones (an INSERT's rows, the rows an UPDATE wrote), each narrowed to the columns
-- the rollups read, and a row that an UPDATE left the same in those columns is in both and taken out of both
-- (EXCEPT ALL): that is what 0011's `WHEN (OLD.x IS DISTINCT FROM NEW.x ...)` skipped. Every counter then
-- moves by (rows that came) - (rows that went), summed per group, in one upsert per table; the narrow rows of
-- what went are deleted unless the same key came back, and the rows that came are upserted.
--
-- Each rule has one home: the instance and the step statement are written once below, as templates, and a DO
-- block makes each trigger's function from them, giving the INSERT trigger an empty relation where the rows
-- that went would be and the DELETE trigger one where the rows that came would be (a trigger with transition
-- tables has exactly one event, and a relation it does not declare cannot be named).

DROP TRIGGER IF EXISTS analytics_instance_written ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instance_updated ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_step_written ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_step_updated ON workflow_step_executions;
DROP FUNCTION IF EXISTS analytics_instance_changed();
DROP FUNCTION IF EXISTS analytics_step_changed();

-- the owner lookup stays per row (it fills NEW), but runs only when a writer left something out: the projector
-- gives all three, so its rows no longer enter PL/pgSQL at all
DROP TRIGGER IF EXISTS analytics_step_owner ON workflow_step_executions;
CREATE TRIGGER analytics_step_owner BEFORE INSERT OR UPDATE ON workflow_step_executions FOR EACH ROW
    WHEN (NEW.tenant_id IS NULL OR NEW.template_id IS NULL OR NEW.instance_created_at IS NULL)
    EXECUTE FUNCTION analytics_step_owner();

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
