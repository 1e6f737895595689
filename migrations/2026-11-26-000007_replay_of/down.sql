ALTER TABLE webhook_events DROP COLUMN replay_of, DROP COLUMN only_destination;
