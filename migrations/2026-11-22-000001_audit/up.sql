-- The audit trail: one row per accepted event, one per delivery attempt.
-- No foreign key from attempts to events: both are written asynchronously in batches,
-- and an attempt row must never be refused because its event row is still in flight.
CREATE TABLE webhook_events (
    id              UUID PRIMARY KEY,
    source          TEXT NOT NULL,
    event_type      TEXT,
    idempotency_key TEXT NOT NULL,
    stream_id       TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'delivering', 'delivered', 'retrying', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    received_at     TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    content_type    TEXT,
    headers         JSONB NOT NULL DEFAULT '{}'::jsonb,
    payload         BYTEA NOT NULL
);
CREATE INDEX webhook_events_source_received ON webhook_events (source, received_at DESC);
CREATE INDEX webhook_events_status_received ON webhook_events (status, received_at DESC);
CREATE INDEX webhook_events_received ON webhook_events (received_at DESC);

CREATE TABLE delivery_attempts (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL,
    destination  TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    status_code  INTEGER,
    duration_ms  INTEGER NOT NULL,
    error        TEXT,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, attempted_at);
