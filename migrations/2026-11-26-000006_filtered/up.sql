-- `filtered`: a destination did not want the event (its event_types or filter), so it was
-- never attempted there. The status CHECKs were named by PostgreSQL (and renamed when the
-- tables were partitioned), so they are found by what they check rather than by name.
DO $$
DECLARE c record;
BEGIN
  FOR c IN
    SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
    WHERE contype = 'c' AND conrelid IN ('webhook_events'::regclass, 'deliveries'::regclass)
      AND conparentid = 0 AND pg_get_constraintdef(oid) LIKE '%status%'
  LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname);
  END LOOP;
END $$;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_status_known
  CHECK (status IN ('queued', 'delivering', 'delivered', 'retrying', 'dead', 'filtered'));
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_known
  CHECK (status IN ('queued', 'delivering', 'delivered', 'retrying', 'dead', 'filtered'));
