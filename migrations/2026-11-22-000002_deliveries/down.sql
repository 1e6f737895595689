DROP TABLE deliveries;
ALTER TABLE webhook_events DROP COLUMN destinations;
