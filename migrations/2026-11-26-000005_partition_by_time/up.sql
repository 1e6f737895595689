-- The audit trail by day: every row of an event (its row, its payload, its deliveries, its
-- attempts) lives in the partition of the day it was received (UTC), so retention drops whole
-- partitions
-- (no DELETE of rows) and an event's rows are found in one partition: its id is a UUIDv7,
-- whose time is the time it was received.
--
-- An existing installation is converted in this migration, inside the migration lock and
-- one transaction: new partitioned tables, a partition per day present, the rows copied,
-- the old tables dropped. It rewrites the trail once: plan a quiet moment for a large one.

-- Payloads have a table of their own, so that audit.payload_retention_days can drop them
-- sooner than the rows, a whole day at a time.
--
-- Creates the day's partitions of the four tables when they are missing. Named
-- <table>_pYYYYMMDD; bounds are UTC days.
CREATE FUNCTION hookgate_ensure_partitions(day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  t text;
  low timestamptz := (day::timestamp AT TIME ZONE 'UTC');
  high timestamptz := ((day + 1)::timestamp AT TIME ZONE 'UTC');
BEGIN
  FOREACH t IN ARRAY ARRAY['webhook_events', 'event_payloads', 'deliveries', 'delivery_attempts'] LOOP
    IF to_regclass(format('%I', t || '_p' || to_char(day, 'YYYYMMDD'))) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
        t || '_p' || to_char(day, 'YYYYMMDD'), t, low, high);
    END IF;
  END LOOP;
END $$;

ALTER TABLE webhook_events RENAME TO webhook_events_unpartitioned;
ALTER TABLE deliveries RENAME TO deliveries_unpartitioned;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_unpartitioned;
-- Index names are global: the old ones make way.
ALTER INDEX webhook_events_pkey RENAME TO webhook_events_unpartitioned_pkey;
ALTER INDEX webhook_events_source_received RENAME TO webhook_events_unpartitioned_source;
ALTER INDEX webhook_events_status_received RENAME TO webhook_events_unpartitioned_status;
ALTER INDEX webhook_events_received RENAME TO webhook_events_unpartitioned_received;
ALTER INDEX deliveries_pkey RENAME TO deliveries_unpartitioned_pkey;
ALTER INDEX delivery_attempts_pkey RENAME TO delivery_attempts_unpartitioned_pkey;
ALTER INDEX delivery_attempts_event RENAME TO delivery_attempts_unpartitioned_event;
ALTER INDEX delivery_attempts_once RENAME TO delivery_attempts_unpartitioned_once;

CREATE TABLE webhook_events (
    id              UUID NOT NULL,
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
    destinations    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

CREATE TABLE event_payloads (
    event_id    UUID NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    payload     BYTEA NOT NULL,
    PRIMARY KEY (event_id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX webhook_events_source_received ON webhook_events (source, received_at DESC);
CREATE INDEX webhook_events_status_received ON webhook_events (status, received_at DESC);
CREATE INDEX webhook_events_received ON webhook_events (received_at DESC);

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
    received_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_id, destination, received_at)
) PARTITION BY RANGE (received_at);

CREATE TABLE delivery_attempts (
    id           BIGSERIAL,
    event_id     UUID NOT NULL,
    destination  TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    status_code  INTEGER,
    duration_ms  INTEGER NOT NULL,
    error        TEXT,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    received_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, attempted_at);
CREATE UNIQUE INDEX delivery_attempts_once
  ON delivery_attempts (event_id, destination, attempt, attempted_at, received_at);

-- A partition for every day that has rows, and for today and the next days.
SELECT hookgate_ensure_partitions(d::date) FROM (
  SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date AS d FROM webhook_events_unpartitioned
  UNION
  SELECT DISTINCT (attempted_at AT TIME ZONE 'UTC')::date FROM delivery_attempts_unpartitioned
  UNION
  SELECT DISTINCT (updated_at AT TIME ZONE 'UTC')::date FROM deliveries_unpartitioned
  UNION
  SELECT generate_series((now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 2, '1 day')::date
) days;

INSERT INTO webhook_events
  SELECT id, source, event_type, idempotency_key, stream_id, status, attempts, last_error,
         received_at, delivered_at, content_type, headers, destinations
  FROM webhook_events_unpartitioned;
INSERT INTO event_payloads SELECT id, received_at, payload FROM webhook_events_unpartitioned;
-- Deliveries and attempts take their event's time; one whose event row is missing (written
-- by no one) takes its own.
INSERT INTO deliveries
  SELECT d.event_id, d.destination, d.status, d.attempts, d.last_error, d.last_status_code,
         d.updated_at, d.delivered_at, coalesce(e.received_at, d.updated_at)
  FROM deliveries_unpartitioned d LEFT JOIN webhook_events_unpartitioned e ON e.id = d.event_id;
INSERT INTO delivery_attempts
  (event_id, destination, attempt, status_code, duration_ms, error, attempted_at, received_at)
  SELECT a.event_id, a.destination, a.attempt, a.status_code, a.duration_ms, a.error,
         a.attempted_at, coalesce(e.received_at, a.attempted_at)
  FROM delivery_attempts_unpartitioned a LEFT JOIN webhook_events_unpartitioned e ON e.id = a.event_id
  ORDER BY a.id;

DROP TABLE webhook_events_unpartitioned;
DROP TABLE deliveries_unpartitioned;
DROP TABLE delivery_attempts_unpartitioned;
