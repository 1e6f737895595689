//! Consumer groups: create them, recognise a lost one, read a stream's groups.

/// Creates a consumer group (and its stream) starting from the first entry; an existing
/// group is left as it is. Called at start and again whenever Redis answers `NOGROUP`.
pub async fn ensure_group(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    group: &str,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Whether an error says the consumer group is gone (Redis restarted empty, or deleted).
/// Redis keeps the code when the command ran inside a script, so the code alone decides.
pub fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// `XINFO GROUPS` of a stream, or None when the stream does not exist (yet): asked in one
/// script so that a missing stream is an answer, not an error to recognise by its text.
pub async fn stream_groups(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> redis::RedisResult<Option<redis::streams::StreamInfoGroupsReply>> {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return false end \
         return redis.call('XINFO', 'GROUPS', KEYS[1])",
    )
    .key(stream)
    .invoke_async(conn)
    .await
}
