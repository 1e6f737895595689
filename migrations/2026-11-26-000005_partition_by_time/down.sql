-- Back to one table each (rows kept).
CREATE TABLE webhook_events_flat (LIKE webhook_events INCLUDING DEFAULTS);
INSERT INTO webhook_events_flat SELECT * FROM webhook_events;
CREATE TABLE deliveries_flat (LIKE deliveries INCLUDING DEFAULTS);
INSERT INTO deliveries_flat SELECT * FROM deliveries;
CREATE TABLE delivery_attempts_flat (LIKE delivery_attempts INCLUDING DEFAULTS);
INSERT INTO delivery_attempts_flat SELECT * FROM delivery_attempts;
-- The attempts' id sequence goes with the flat table.
DO $$ BEGIN
  EXECUTE format('ALTER SEQUENCE %s OWNED BY delivery_attempts_flat.id',
    pg_get_serial_sequence('delivery_attempts', 'id'));
END $$;
DROP TABLE webhook_events, deliveries, delivery_attempts;
DROP FUNCTION hookgate_ensure_partitions(date);
ALTER TABLE webhook_events_flat RENAME TO webhook_events;
ALTER TABLE deliveries_flat RENAME TO deliveries;
ALTER TABLE delivery_attempts_flat RENAME TO delivery_attempts;
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
