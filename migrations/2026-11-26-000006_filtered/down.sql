UPDATE deliveries SET status = 'delivered' WHERE status = 'filtered';
UPDATE webhook_events SET status = 'delivered' WHERE status = 'filtered';
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_status_known;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_known;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_status_check
  CHECK (status IN ('queued', 'delivering', 'delivered', 'retrying', 'dead'));
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
  CHECK (status IN ('queued', 'delivering', 'delivered', 'retrying', 'dead'));
