DROP INDEX IF EXISTS webhook_events_idempotency_key;
DROP INDEX IF EXISTS delivery_attempts_attempted_at;
