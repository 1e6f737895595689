-- A replay under a new id is an event of its own: the trail keeps which event it copies and,
-- for a replay to one destination, which one, so that a recovery from the trail (Redis lost
-- its data) queues it again as it was, rather than as a duplicate of its original.
ALTER TABLE webhook_events ADD COLUMN replay_of UUID, ADD COLUMN only_destination TEXT;
