-- The dashboard's searches: events by idempotency key, and the last hour's attempts for the
-- latency per destination (otherwise each reads whole partitions).
CREATE INDEX IF NOT EXISTS webhook_events_idempotency_key ON webhook_events (idempotency_key);
CREATE INDEX IF NOT EXISTS delivery_attempts_attempted_at ON delivery_attempts (attempted_at);
