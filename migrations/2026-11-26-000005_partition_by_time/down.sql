-- Back to one table each, the payload in its event's row (rows kept; payloads already
-- dropped by audit.payload_retention_days come back empty).
CREATE TABLE webhook_events_flat AS
  SELECT e.id, e.source, e.event_type, e.idempotency_key, e.stream_id, e.status, e.attempts,
         e.last_error, e.received_at, e.delivered_at, e.content_type, e.headers,
         coalesce(p.payload, '') AS payload, e.destinations
  FROM webhook_events e
  LEFT JOIN event_payloads p ON p.event_id = e.id AND p.received_at = e.received_at;
CREATE TABLE deliveries_flat (LIKE deliveries INCLUDING DEFAULTS);
INSERT INTO deliveries_flat SELECT * FROM deliveries;
CREATE TABLE delivery_attempts_flat (LIKE delivery_attempts INCLUDING DEFAULTS);
INSERT INTO delivery_attempts_flat SELECT * FROM delivery_attempts;
-- The attempts' id sequence goes with the flat table.
DO $$ BEGIN
  EXECUTE format('ALTER SEQUENCE %s OWNED BY delivery_attempts_flat.id',
    pg_get_serial_sequence('delivery_attempts', 'id'));
END $$;
DROP TABLE webhook_events, event_payloads, deliveries, delivery_attempts;
DROP FUNCTION hookgate_ensure_partitions(date);
ALTER TABLE webhook_events_flat RENAME TO webhook_events;
ALTER TABLE deliveries_flat RENAME TO deliveries;
ALTER TABLE delivery_attempts_flat RENAME TO delivery_attempts;
ALTER TABLE webhook_events ALTER COLUMN status SET DEFAULT 'queued',
  ALTER COLUMN attempts SET DEFAULT 0, ALTER COLUMN headers SET DEFAULT '{}'::jsonb,
  ALTER COLUMN destinations SET DEFAULT 1,
  ALTER COLUMN id SET NOT NULL, ALTER COLUMN source SET NOT NULL,
  ALTER COLUMN idempotency_key SET NOT NULL, ALTER COLUMN stream_id SET NOT NULL,
  ALTER COLUMN status SET NOT NULL, ALTER COLUMN attempts SET NOT NULL,
  ALTER COLUMN received_at SET NOT NULL, ALTER COLUMN headers SET NOT NULL,
  ALTER COLUMN payload SET NOT NULL, ALTER COLUMN destinations SET NOT NULL;
ALTER TABLE webhook_events ADD PRIMARY KEY (id);
ALTER TABLE deliveries ADD PRIMARY KEY (event_id, destination);
ALTER TABLE delivery_attempts DROP COLUMN received_at;
ALTER TABLE deliveries DROP COLUMN received_at;
ALTER TABLE delivery_attempts ADD PRIMARY KEY (id);
CREATE INDEX webhook_events_source_received ON webhook_events (source, received_at DESC);
CREATE INDEX webhook_events_status_received ON webhook_events (status, received_at DESC);
CREATE INDEX webhook_events_received ON webhook_events (received_at DESC);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, attempted_at);
CREATE UNIQUE INDEX delivery_attempts_once
  ON delivery_attempts (event_id, destination, attempt, attempted_at);
