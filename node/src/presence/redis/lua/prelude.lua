-- Shared by every script. KEYS (all carry the hash tag {prefix}, so they share one slot):
--   KEYS[1] {prefix}:total    string  the cluster total (sum of live shares)
--   KEYS[2] {prefix}:version  string  version of the last announced total
--   KEYS[3] {prefix}:shares   hash    node id -> share
--   KEYS[4] {prefix}:nodes    zset    node id -> heartbeat deadline (ms, Redis clock)
-- The key order is declared once, in scripts.rs (GLOBAL_KEYS).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

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
local function announce(floor, channel)
  redis.call('SET', KEYS[1], total)
  local version = tonumber(redis.call('GET', KEYS[2]) or '0')
  if version < floor then version = floor end
  version = version + 1
  redis.call('SET', KEYS[2], version)
  redis.call('PUBLISH', channel, string.format('{"v":%d,"users":%d}', version, total))
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
