//! The scripts that settle a delivery and promote due retries (the rate limit's is in
//! [`super::rate`]).

// Settling a delivery: its outcome is recorded, the entry acknowledged and the attempt's
// audit record appended to the outcomes stream, in one script. The XACK goes first and
// decides: if another replica already settled the entry (it claimed it), this one records
// nothing, so an outcome is recorded exactly once per entry, and so is its audit record.
// Common keys: KEYS[1] the stream the entry came from, KEYS[2] the outcomes stream, KEYS[3]
// the counter of outcomes dropped at the bound; the script's own keys follow.
// Common arguments: ARGV[1] group, ARGV[2] entry id, ARGV[3] '1' to delete the entry after
// the ack (retry streams belong to one destination), ARGV[4] how many outcome arguments
// follow ARGV[5], the outcomes stream's bound (0 when there is no attempt to record, as for
// a park); the script's own arguments come after the outcome's.
macro_rules! settle_script {
    ($($own:tt)*) => {
        concat!(
            r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
local n = tonumber(ARGV[4])
if n > 0 then
  if redis.call('XLEN', KEYS[2]) < tonumber(ARGV[5]) then
    redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6, 5 + n))
  else
    redis.call('INCR', KEYS[3])
  end
end
local a = 6 + n
"#,
            $($own)*
        )
    };
}

/// Delivered. KEYS[4] the destination's delivered counter.
pub const SETTLE_DELIVERED_LUA: &str = settle_script!(
    r#"
redis.call('INCR', KEYS[4])
return 1
"#
);

/// Parked for a later attempt. KEYS[4] the schedule, KEYS[5] the parked hash; own ARGV: due
/// (ms), the token, then the entry's field/value pairs.
pub const SETTLE_RETRY_LUA: &str = settle_script!(
    r#"
redis.call('HSET', KEYS[5], unpack(ARGV, a + 2))
redis.call('ZADD', KEYS[4], ARGV[a], ARGV[a + 1])
return 1
"#
);

/// Dead. KEYS[4] the dead-letter stream, KEYS[5] the destination's dead counter; own ARGV:
/// the dead letter's field/value pairs.
pub const SETTLE_DEAD_LUA: &str = settle_script!(
    r#"
redis.call('XADD', KEYS[4], '*', unpack(ARGV, a))
redis.call('INCR', KEYS[5])
return 1
"#
);

/// Delivered, for an ordered destination: the key's next event goes (see `ordering.rs` for
/// the keys and arguments before the counter's). KEYS[4] the delivered counter (KEYS[5] too).
pub const SETTLE_DELIVERED_ORDERED_LUA: &str = settle_script!(ordered_settle!(
    r#"
redis.call('INCR', KEYS[4])
return 1
"#
));

/// Dead, for an ordered destination: the key's next event goes, or the key stays blocked.
/// KEYS[4] the dead-letter stream, KEYS[5] the destination's dead counter; own ARGV (after
/// the ordered ones): the dead letter's field/value pairs.
pub const SETTLE_DEAD_ORDERED_LUA: &str = settle_script!(ordered_settle!(
    r#"
redis.call('XADD', KEYS[4], '*', unpack(ARGV, a))
redis.call('INCR', KEYS[5])
return 1
"#
));

/// Moves due parked deliveries into the retry stream, atomically, so exactly one replica
/// runs each. KEYS[1] schedule, KEYS[2] retry stream; ARGV[1] now (ms), ARGV[2] how many at
/// most, ARGV[3] the parked hashes' prefix. Returns how many moved.
pub const PROMOTE_DUE_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, token in ipairs(due) do
  local hash = ARGV[3] .. token
  local fields = redis.call('HGETALL', hash)
  if #fields > 0 then redis.call('XADD', KEYS[2], '*', unpack(fields)) end
  redis.call('DEL', hash)
  redis.call('ZREM', KEYS[1], token)
end
return #due
"#;
