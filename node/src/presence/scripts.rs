//! The Lua scripts that make every count change one atomic Redis step.
//!
//! Keys (all share the hash tag `{prefix}`, so they live in one Redis Cluster slot):
//! `KEYS[1]` `{prefix}:total` (string), `KEYS[2]` `{prefix}:version` (string),
//! `KEYS[3]` `{prefix}:shares` (hash node -> share), `KEYS[4]` `{prefix}:nodes`
//! (sorted set node -> heartbeat deadline in ms, Redis clock). Announcements go to the
//! channel `{prefix}:updates` as `{"v":<version>,"users":<total>}`; because PUBLISH runs inside
//! the same script as the change, publish order is mutation order.

/// Shared prelude: the Redis clock, the total (rebuilt from the shares if it was lost), and a
/// function that bumps the version above the caller's floor and announces the total.
const PRELUDE: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local total = redis.call('GET', KEYS[1])
local total_lost = not total
if total then
  total = tonumber(total)
else
  total = 0
  for _, share in ipairs(redis.call('HVALS', KEYS[3])) do total = total + tonumber(share) end
end
local function announce(floor, channel)
  redis.call('SET', KEYS[1], total)
  local version = tonumber(redis.call('GET', KEYS[2]) or '0')
  if version < floor then version = floor end
  version = version + 1
  redis.call('SET', KEYS[2], version)
  redis.call('PUBLISH', channel,
    string.format('{"v":%d,"users":%d}', version, total))
  return version
end
local function current_version()
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
"#;

/// ARGV: node, share, ttl_ms, floor, channel.
/// Reaps expired nodes (not the caller), heartbeats the caller, sets its share, and announces
/// if anything changed. Returns `{total, version, restored (0|1), reaped, live nodes}`.
const WRITE_SHARE: &str = r#"
local node, share, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local floor, channel = tonumber(ARGV[4]), ARGV[5]
local changed = total_lost
local reaped = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  if id ~= node then
    local dead_share = redis.call('HGET', KEYS[3], id)
    if dead_share then
      total = total - tonumber(dead_share)
      redis.call('HDEL', KEYS[3], id)
    end
    redis.call('ZREM', KEYS[4], id)
    reaped = reaped + 1
    changed = true
  end
end
redis.call('ZADD', KEYS[4], now + ttl, node)
local old = redis.call('HGET', KEYS[3], node)
local restored = 0
if not old then restored = 1 end
if restored == 1 or tonumber(old) ~= share then
  total = total - tonumber(old or '0') + share
  redis.call('HSET', KEYS[3], node, share)
  changed = true
end
local version
if changed then version = announce(floor, channel) else version = current_version() end
return {total, version, restored, reaped, redis.call('ZCARD', KEYS[4])}
"#;

/// ARGV: node, floor, channel. Removes the node and its share; always announces.
/// Returns `{total, version}`.
const DEREGISTER: &str = r#"
local node, floor, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local share = redis.call('HGET', KEYS[3], node)
if share then total = total - tonumber(share) end
redis.call('HDEL', KEYS[3], node)
redis.call('ZREM', KEYS[4], node)
return {total, announce(floor, channel)}
"#;

/// No ARGV. Returns `{now, id1, share1, deadline1, id2, ...}` for the nodes not yet expired.
const NODES: &str = r#"
local out = {now}
local live = redis.call('ZRANGEBYSCORE', KEYS[4], now, '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[3], live[i]) or '0')
  out[#out + 1] = tonumber(live[i + 1])
end
return out
"#;

/// The three scripts, compiled once per backend (their SHA1s are what EVALSHA sends).
pub struct Scripts {
    /// See [`WRITE_SHARE`].
    pub write_share: redis::Script,
    /// See [`DEREGISTER`].
    pub deregister: redis::Script,
    /// See [`NODES`].
    pub nodes: redis::Script,
}

impl Scripts {
    /// Prepends the prelude to each script body.
    pub fn new() -> Self {
        let with_prelude = |body: &str| redis::Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            write_share: with_prelude(WRITE_SHARE),
            deregister: with_prelude(DEREGISTER),
            nodes: with_prelude(NODES),
        }
    }
}
