//! The scripts of ordered delivery. For a destination with an `ordering_key`, one replica at a
//! time (the sequencer, holding a lease) admits the source stream's events in stream order:
//! an event whose key is free becomes the key's head and goes to the destination's ready
//! stream (its retry stream); one whose key is held waits in the key's list. Settling a head
//! releases the key's next event. Every step is one script in the partition's slot, so the
//! order survives any replica dying between steps.
//!
//! Keys of one destination in one partition: `holds` (hash: key → the head's event id),
//! `blocked` (hash: key → the dead head holding it, with `on_dead = "block"`), `held` (count of
//! waiting events), the waiting lists `<waiting prefix><key>` of tokens, each token's event in
//! the hash `<parked prefix><token>`.

/// A Lua function releasing `key` when `eid` is its head: the next waiting event becomes the
/// head and goes to the ready stream, or the key is free. Returns 1 if released.
macro_rules! release_fn {
    () => {
        r#"
local function release(holds, blocked, ready, held, wlist, pprefix, key, eid)
  if redis.call('HGET', holds, key) ~= eid then return 0 end
  redis.call('HDEL', blocked, key)
  while true do
    local token = redis.call('LPOP', wlist)
    if not token then
      redis.call('HDEL', holds, key)
      return 1
    end
    redis.call('DECR', held)
    local hash = pprefix .. token
    local fields = redis.call('HGETALL', hash)
    redis.call('DEL', hash)
    if #fields > 0 then
      for i = 1, #fields, 2 do
        if fields[i] == 'id' then redis.call('HSET', holds, key, fields[i + 1]) end
      end
      redis.call('XADD', ready, '*', unpack(fields))
      return 1
    end
  end
end
"#
    };
}

/// Admits entries of the source stream, in the order given, if the caller still holds the
/// sequencer lease. KEYS[1] source stream, KEYS[2] ready stream, KEYS[3] holds, KEYS[4]
/// blocked, KEYS[5] held counter, KEYS[6] lease; ARGV[1] group, ARGV[2] lease token, ARGV[3]
/// parked prefix, ARGV[4] waiting prefix, then five per entry: stream id, event id, ordering
/// key ('' for none: delivered unordered), the key's list suffix, the id it replays ('' if
/// none: a replay under a new id takes over its original's hold if that one is blocking). Entries already
/// acknowledged are skipped, so a batch admitted twice admits once. Returns how many were
/// admitted, or -1 when the lease is gone.
pub const ORDER_ADMIT_LUA: &str = r#"
if redis.call('GET', KEYS[6]) ~= ARGV[2] then return -1 end
local admitted = 0
for i = 5, #ARGV, 5 do
  local sid, eid, key, wname, of = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local entry = redis.call('XRANGE', KEYS[1], sid, sid)
  if redis.call('XACK', KEYS[1], ARGV[1], sid) == 1 and #entry > 0 then
    local fields = entry[1][2]
    if key == '' then
      redis.call('XADD', KEYS[2], '*', unpack(fields))
    else
      local head = redis.call('HGET', KEYS[3], key)
      -- A copy under a new id takes over from the dead original blocking the key, never
      -- from a live one (both would then be in flight).
      local takes_over = of ~= '' and head == of and redis.call('HGET', KEYS[4], key) == of
      if (not head) or head == eid or takes_over then
        redis.call('HSET', KEYS[3], key, eid)
        if head then redis.call('HDEL', KEYS[4], key) end
        redis.call('XADD', KEYS[2], '*', 'okey', key, unpack(fields))
      else
        local token = 'w:' .. eid .. ':' .. sid
        redis.call('HSET', ARGV[3] .. token, 'okey', key, unpack(fields))
        redis.call('RPUSH', ARGV[4] .. wname, token)
        redis.call('INCR', KEYS[5])
      end
    end
    admitted = admitted + 1
  end
end
return admitted
"#;

/// The error code of a sequencer's read refused because its lease is gone.
pub const LEASE_LOST: &str = "LEASELOST";

/// Reads new entries of the source stream for the sequencer holding the lease, so that a
/// replica that lost it cannot take entries off the group that nobody would admit. KEYS[1]
/// source stream, KEYS[2] lease; ARGV[1] token, ARGV[2] group, ARGV[3] consumer, ARGV[4] how
/// many at most. Returns XREADGROUP's reply, or a LEASELOST error.
pub const ORDER_READ_LUA: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST the sequencer lease is held by another replica')
end
return redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
"#;

/// Takes over, for the sequencer holding the lease, every entry of the source stream read
/// and not admitted (by a sequencer that died, lost its lease, or failed), oldest first.
/// Arguments as [`ORDER_READ_LUA`]'s. Returns XAUTOCLAIM's reply, or a LEASELOST error.
pub const ORDER_SWEEP_LUA: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('LEASELOST the sequencer lease is held by another replica')
end
return redis.call('XAUTOCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, '0-0', 'COUNT', ARGV[4])
"#;

/// Takes or keeps the sequencer lease. KEYS[1] lease; ARGV[1] token, ARGV[2] ms. Returns 2
/// when newly taken, 1 when kept, 0 when another replica holds it.
pub const ORDER_LEASE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"#;

/// Gives the lease up (at shutdown), if still ours. KEYS[1] lease; ARGV[1] token.
pub const ORDER_UNLEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// An operator discards the dead head blocking a key: the key's next event goes. KEYS[1]
/// holds, KEYS[2] blocked, KEYS[3] ready stream, KEYS[4] held counter, KEYS[5] the key's
/// waiting list; ARGV[1] parked prefix, ARGV[2] key. Returns the dead event's id, or false
/// when the key is not blocked.
pub const ORDER_DISCARD_LUA: &str = concat!(
    release_fn!(),
    r#"
local eid = redis.call('HGET', KEYS[2], ARGV[2])
if not eid then return false end
redis.call('HDEL', KEYS[2], ARGV[2])
release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], eid)
return eid
"#
);

/// The ordered part of settling a head, appended to a settle script (see `settle.rs`): its
/// keys come after the script's own two (KEYS[6] holds, KEYS[7] blocked, KEYS[8] ready, KEYS[9]
/// held, KEYS[10] the key's waiting list) and its arguments first among the script's own
/// (ARGV[a] key, ARGV[a + 1] event id, ARGV[a + 2] parked prefix, ARGV[a + 3] 'block' to
/// keep the key held by a dead head, else 'release'), so the script's own start at a + 4.
macro_rules! ordered_settle {
    ($own:literal) => {
        concat!(
            release_fn!(),
            r#"
local block = ARGV[a + 3] == 'block'
if block then
  if redis.call('HGET', KEYS[6], ARGV[a]) == ARGV[a + 1] then
    redis.call('HSET', KEYS[7], ARGV[a], ARGV[a + 1])
  end
else
  release(KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], ARGV[a + 2], ARGV[a], ARGV[a + 1])
end
a = a + 4
"#,
            $own
        )
    };
}

/// A destination no longer ordered lets every waiting event go: up to ARGV[3] of them per
/// call. KEYS[1] holds, KEYS[2] blocked, KEYS[3] ready stream, KEYS[4] held counter; ARGV[1]
/// waiting prefix, ARGV[2] parked prefix, ARGV[3] the bound, then pairs of key and list
/// suffix. A key is forgotten once its list is empty. Returns how many events moved.
pub const ORDER_FLUSH_LUA: &str = r#"
local budget = tonumber(ARGV[3])
local moved = 0
for i = 4, #ARGV, 2 do
  local key, wlist = ARGV[i], ARGV[1] .. ARGV[i + 1]
  while moved < budget do
    local token = redis.call('LPOP', wlist)
    if not token then break end
    redis.call('DECR', KEYS[4])
    local hash = ARGV[2] .. token
    local fields = redis.call('HGETALL', hash)
    redis.call('DEL', hash)
    if #fields > 0 then redis.call('XADD', KEYS[3], '*', unpack(fields)) end
    moved = moved + 1
  end
  if redis.call('LLEN', wlist) == 0 then
    redis.call('HDEL', KEYS[1], key)
    redis.call('HDEL', KEYS[2], key)
  end
end
return moved
"#;

#[cfg(test)]
mod redis_tests {
    use super::*;

    /// The keys of one ordered destination, under a fresh prefix.
    struct Keys {
        stream: String,
        ready: String,
        holds: String,
        blocked: String,
        held: String,
        lease: String,
        parked: String,
        waiting: String,
        tag: String,
    }

    fn keys() -> Keys {
        let tag = format!("hgtest-{}:{{s}}", uuid::Uuid::new_v4().simple());
        let k = |s: &str| format!("{tag}:{s}");
        Keys {
            stream: k("stream"),
            ready: k("ready"),
            holds: k("holds"),
            blocked: k("blocked"),
            held: k("held"),
            lease: k("lease"),
            parked: k("parked:"),
            waiting: k("waiting:"),
            tag,
        }
    }

    async fn cleanup(conn: &mut redis::aio::MultiplexedConnection, k: &Keys) {
        let names: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", k.tag))
            .query_async(conn)
            .await
            .expect("KEYS");
        if !names.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(names)
                .query_async(conn)
                .await
                .expect("DEL");
        }
    }

    /// Appends an event of `id` and reads it through the group as consumer `c` (as a
    /// sequencer that read it); returns its stream id.
    async fn appended_and_read(
        conn: &mut redis::aio::MultiplexedConnection,
        k: &Keys,
        id: &str,
    ) -> String {
        let sid: String = redis::cmd("XADD")
            .arg(&k.stream)
            .arg("*")
            .arg("id")
            .arg(id)
            .query_async(conn)
            .await
            .expect("XADD");
        let _: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&k.stream)
            .arg("g")
            .arg("0")
            .query_async(conn)
            .await;
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg(&k.stream)
            .arg(">")
            .query_async(conn)
            .await
            .expect("XREADGROUP");
        sid
    }

    async fn admit(
        conn: &mut redis::aio::MultiplexedConnection,
        k: &Keys,
        token: &str,
        entry: (&str, &str, &str, &str),
    ) -> i64 {
        let (sid, id, key, replay_of) = entry;
        redis::Script::new(ORDER_ADMIT_LUA)
            .key(&k.stream)
            .key(&k.ready)
            .key(&k.holds)
            .key(&k.blocked)
            .key(&k.held)
            .key(&k.lease)
            .arg("g")
            .arg(token)
            .arg(&k.parked)
            .arg(&k.waiting)
            .arg(sid)
            .arg(id)
            .arg(key)
            .arg(key)
            .arg(replay_of)
            .invoke_async(conn)
            .await
            .expect("admit")
    }

    #[actix_web::test]
    async fn a_sequencer_without_the_lease_reads_and_admits_nothing() {
        let mut conn = crate::queue::test_connection().await;
        let k = keys();
        let _: () = redis::cmd("SET")
            .arg(&k.lease)
            .arg("theirs")
            .query_async(&mut conn)
            .await
            .expect("SET");
        let _: String = redis::cmd("XADD")
            .arg(&k.stream)
            .arg("*")
            .arg("id")
            .arg("e1")
            .query_async(&mut conn)
            .await
            .expect("XADD");
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&k.stream)
            .arg("g")
            .arg("0")
            .query_async(&mut conn)
            .await
            .expect("group");
        for script in [ORDER_READ_LUA, ORDER_SWEEP_LUA] {
            let err = redis::Script::new(script)
                .key(&k.stream)
                .key(&k.lease)
                .arg("mine")
                .arg("g")
                .arg("c")
                .arg(10)
                .invoke_async::<redis::Value>(&mut conn)
                .await
                .expect_err("fenced");
            assert_eq!(err.code(), Some(LEASE_LOST), "{err:?}");
        }
        let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg(&k.stream)
            .arg("g")
            .query_async(&mut conn)
            .await
            .expect("XPENDING");
        assert_eq!(pending.count(), 0, "nothing taken off the group");
        cleanup(&mut conn, &k).await;
    }

    #[actix_web::test]
    async fn a_copy_under_a_new_id_takes_over_only_from_a_blocking_original() {
        let mut conn = crate::queue::test_connection().await;
        let k = keys();
        let _: () = redis::cmd("SET")
            .arg(&k.lease)
            .arg("mine")
            .query_async(&mut conn)
            .await
            .expect("SET");
        let s1 = appended_and_read(&mut conn, &k, "orig").await;
        assert_eq!(
            admit(&mut conn, &k, "mine", (&s1, "orig", "K", "")).await,
            1
        );
        // The original is the live head: its copy waits behind it.
        let s2 = appended_and_read(&mut conn, &k, "copy").await;
        assert_eq!(
            admit(&mut conn, &k, "mine", (&s2, "copy", "K", "orig")).await,
            1
        );
        let head: String = redis::cmd("HGET")
            .arg(&k.holds)
            .arg("K")
            .query_async(&mut conn)
            .await
            .expect("HGET");
        assert_eq!(head, "orig");
        let waiting: usize = redis::cmd("LLEN")
            .arg(format!("{}K", k.waiting))
            .query_async(&mut conn)
            .await
            .expect("LLEN");
        assert_eq!(waiting, 1);
        // Once the original blocks the key (dead), a copy takes over at once.
        let _: () = redis::cmd("HSET")
            .arg(&k.blocked)
            .arg("K")
            .arg("orig")
            .query_async(&mut conn)
            .await
            .expect("HSET");
        let s3 = appended_and_read(&mut conn, &k, "copy2").await;
        assert_eq!(
            admit(&mut conn, &k, "mine", (&s3, "copy2", "K", "orig")).await,
            1
        );
        let head: String = redis::cmd("HGET")
            .arg(&k.holds)
            .arg("K")
            .query_async(&mut conn)
            .await
            .expect("HGET");
        assert_eq!(head, "copy2");
        let blocked: bool = redis::cmd("HEXISTS")
            .arg(&k.blocked)
            .arg("K")
            .query_async(&mut conn)
            .await
            .expect("HEXISTS");
        assert!(!blocked, "the key is no longer blocked");
        let ready: usize = redis::cmd("XLEN")
            .arg(&k.ready)
            .query_async(&mut conn)
            .await
            .expect("XLEN");
        assert_eq!(ready, 2, "the original, then the copy that took over");
        cleanup(&mut conn, &k).await;
    }
}
