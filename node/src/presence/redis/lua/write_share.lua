-- ARGV: node, share, ttl_ms, floor, channel.
-- Reaps expired nodes (never the caller), heartbeats the caller, sets its share, and announces
-- if anything changed. This is also the heartbeat and the authoritative read.
-- Returns {total, version, restored (0|1), reaped, now, live nodes (id, share, deadline)...}.
local node, share, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local floor, channel = tonumber(ARGV[4]), ARGV[5]
forgive_outage(ttl)
local changed = total_lost
local reaped = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  if id ~= node then
    local dead_share = redis.call('HGET', KEYS[3], id)
    if dead_share then
      total = total - tonumber(dead_share)
      redis.call('HDEL', KEYS[3], id)
    end
    redis.call('ZREM', KEYS[4], id)
    reaped[#reaped + 1] = id
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
if changed then version = announce(floor, channel, reaped) else version = current_version() end
local reply = {total, version, restored, #reaped, now}
for _, field in ipairs(live_nodes()) do reply[#reply + 1] = field end
return reply
