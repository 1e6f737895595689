-- Sources whose partitions were given their marker in Redis: a marker missing there later
-- means Redis lost the source's data, and its unfinished events are queued again from here.
CREATE TABLE redis_markers (
    source    TEXT PRIMARY KEY,
    marked_at TIMESTAMPTZ NOT NULL
);
