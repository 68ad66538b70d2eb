-- 0013: no planner statistics for the JSON documents no query filters on (issue 15, the idle stack).
--
-- Autovacuum analyzes a table once a tenth of its rows changed, so after every minute of load it analyzes
-- the read model's tables again. ANALYZE sorts a sample of 30,000 values per column to find its common
-- values and histogram, and for `workflow_transitions.details` (a jsonb document of about 200 bytes) that
-- sort was most of what the stack did in the minute after a load: the table's ANALYZE took 0.26 of the
-- 0.43 CPU-s of one autovacuum round, and `details` alone cost about nine times the table's other
-- columns together (docs/performance.md, "The idle window, right after start and right after load"). These columns are only ever returned, never compared in a WHERE, a JOIN or an ORDER
-- BY (the gateway reads them by instance id), so their statistics had no reader. The columns the
-- queries do filter on keep their statistics, and vacuuming itself is unchanged.
ALTER TABLE workflow_transitions ALTER COLUMN details SET STATISTICS 0;
ALTER TABLE workflow_step_executions ALTER COLUMN output SET STATISTICS 0;
ALTER TABLE workflow_step_executions ALTER COLUMN votes SET STATISTICS 0;
ALTER TABLE workflow_step_executions ALTER COLUMN external_request SET STATISTICS 0;
ALTER TABLE workflow_step_executions ALTER COLUMN external_response SET STATISTICS 0;
