-- no analytics triggers at all: what the rollups cost, by difference (never on a stack whose analytics are read)
BEGIN;
DROP TRIGGER IF EXISTS analytics_instance_written ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instance_updated ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_step_written ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_step_updated ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_inserted ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_updated ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_steps_deleted ON workflow_step_executions;
DROP TRIGGER IF EXISTS analytics_instances_inserted ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instances_updated ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_instances_deleted ON workflow_instances;
DROP TRIGGER IF EXISTS analytics_step_owner ON workflow_step_executions;
COMMIT;
