-- Shared by every script. KEYS (all carry the hash tag {prefix}, so they share one slot):
--   KEYS[1] {prefix}:total    string  the cluster total (sum of live shares)
--   KEYS[2] {prefix}:version  string  version of the last announced total
--   KEYS[3] {prefix}:shares   hash    node id -> share
--   KEYS[4] {prefix}:nodes    zset    node id -> heartbeat deadline (ms, Redis clock)
--   KEYS[5] {prefix}:clock    string  Redis time of the last script (ms)
-- The key order is declared once, in scripts.rs (GLOBAL_KEYS).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Live nodes heartbeat far more often than every ttl / 2, so no script at all for that long
-- means nobody could reach Redis (it was paused, failed over, or cut off from everyone): the
-- deadlines ran out on Redis's clock, not because the nodes died. Move every deadline by the
-- gap before anything reaps, so an outage of Redis itself never reaps live nodes.
local function forgive_outage(ttl)
  local last = tonumber(redis.call('GET', KEYS[5]) or now)
  local gap = now - last
  if gap > ttl / 2 then
    local entries = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      redis.call('ZADD', KEYS[4], tonumber(entries[i + 1]) + gap, entries[i])
    end
  end
  redis.call('SET', KEYS[5], now)
end

-- The total, rebuilt from the shares if it was lost (Redis restarted, FLUSHALL, failover).
local total = redis.call('GET', KEYS[1])
local total_lost = not total
if total then
  total = tonumber(total)
else
  total = 0
  for _, share in ipairs(redis.call('HVALS', KEYS[3])) do total = total + tonumber(share) end
end

-- Stores the total, bumps the version above the caller's floor (so versions keep growing even
-- after data loss) and announces both. PUBLISH inside the script: publish order is mutation order.
-- The nodes this step reaped are named, so a node that was reaped while alive knows that this
-- total no longer holds its share.
local function announce(floor, channel, reaped)
  redis.call('SET', KEYS[1], total)
  local version = tonumber(redis.call('GET', KEYS[2]) or '0')
  if version < floor then version = floor end
  version = version + 1
  redis.call('SET', KEYS[2], version)
  local message = string.format('{"v":%d,"users":%d', version, total)
  if reaped and #reaped > 0 then message = message .. ',"reaped":' .. cjson.encode(reaped) end
  redis.call('PUBLISH', channel, message .. '}')
  return version
end

local function current_version()
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end

-- The live nodes as a flat list: id, share, heartbeat deadline, ...
local function live_nodes()
  local out = {}
  local live = redis.call('ZRANGEBYSCORE', KEYS[4], now, '+inf', 'WITHSCORES')
  for i = 1, #live, 2 do
    out[#out + 1] = live[i]
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[3], live[i]) or '0')
    out[#out + 1] = tonumber(live[i + 1])
  end
  return out
end
