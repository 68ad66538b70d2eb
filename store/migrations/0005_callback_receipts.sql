-- 0005: signed external-step callbacks the gateway accepted, one per step attempt (issue 9.5). The gateway
-- inserts the row with ON CONFLICT DO NOTHING before it sends CompleteExternal, so of two replays of a
-- callback (concurrent or not) exactly one reaches the engine; the others answer 409. A row is deleted
-- again only when the command could not be sent (the caller may retry).
CREATE TABLE IF NOT EXISTS external_callback_receipts (
    instance_id  text        NOT NULL,
    step         integer     NOT NULL,
    attempt      integer     NOT NULL,
    signature    text        NOT NULL,   -- sha256 of the X-Flowline-Signature header (the callback's nonce)
    command_id   text        NOT NULL,
    principal_id text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, step, attempt)
);
