DROP TABLE redis_markers;
