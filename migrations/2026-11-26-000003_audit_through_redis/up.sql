-- Outcomes reach the trail through Redis and may be written twice (an acknowledgement lost,
-- or entries taken over from a replica that died): one row per attempt, whatever happens.
-- The attempt's time is part of the key: a replayed dead letter starts again at attempt 1.
DELETE FROM delivery_attempts a
  USING delivery_attempts b
  WHERE a.id > b.id
    AND a.event_id = b.event_id
    AND a.destination = b.destination
    AND a.attempt = b.attempt
    AND a.attempted_at = b.attempted_at;
CREATE UNIQUE INDEX delivery_attempts_once
  ON delivery_attempts (event_id, destination, attempt, attempted_at);

