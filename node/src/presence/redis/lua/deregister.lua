-- ARGV: node, floor, channel. Removes the node and its share; always announces.
-- Returns {total, version}.
local node, floor, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
redis.call('SET', KEYS[5], now)
local share = redis.call('HGET', KEYS[3], node)
if share then total = total - tonumber(share) end
redis.call('HDEL', KEYS[3], node)
redis.call('ZREM', KEYS[4], node)
return {total, announce(floor, channel)}
