-- The partitions (their marker keys in Redis) that were given their marker: a marker missing
-- there later means Redis lost that partition's data, and its unfinished events are queued
-- again from here. A partition never marked (a first start, one the layout just added) is
-- marked, not mourned.
CREATE TABLE redis_markers (
    marker    TEXT PRIMARY KEY,
    marked_at TIMESTAMPTZ NOT NULL
);
