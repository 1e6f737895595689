-- Per-destination delivery state, so that an event's status can be the least advanced of
-- its deliveries (queued < delivering < retrying < dead < delivered).
ALTER TABLE webhook_events ADD COLUMN destinations INTEGER NOT NULL DEFAULT 1;

CREATE TABLE deliveries (
    event_id         UUID NOT NULL,
    destination      TEXT NOT NULL,
    status           TEXT NOT NULL
                     CHECK (status IN ('queued', 'delivering', 'delivered', 'retrying', 'dead')),
    attempts         INTEGER NOT NULL,
    last_error       TEXT,
    last_status_code INTEGER,
    updated_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    PRIMARY KEY (event_id, destination)
);
