-- 0010: the projector's position in workflow.events, kept in the read model itself (issue 9).
--
-- The projector writes a partition's next offset in the same transaction as the rows projected from the
-- records before it, and seeks to it when the partition is assigned, so the read model and its position
-- cannot disagree: a commit PostgreSQL loses (asynchronous commit and a crash, a failover to an
-- asynchronous replica, a restored backup) loses the position with it, and the events are projected again.
-- Keyed by topic and partition, not by consumer group: the position belongs to the data, whichever group
-- wrote it. Kafka's committed offsets are still written, as a monitoring aid only.
CREATE TABLE IF NOT EXISTS projector_offsets (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
