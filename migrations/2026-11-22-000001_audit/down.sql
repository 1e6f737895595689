DROP TABLE delivery_attempts;
DROP TABLE webhook_events;
