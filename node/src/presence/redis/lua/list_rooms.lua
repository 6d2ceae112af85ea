-- ARGV: tag, low (ZRANGEBYLEX bound), high, limit. The non-empty rooms of one group in name order
-- from `low`, with their counts: [room, c, u, room, c, u, ...].
local tag, low, high, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
for _, room in ipairs(redis.call('ZRANGEBYLEX', tag .. ':rooms', low, high, 'LIMIT', 0, limit)) do
  local counts = redis.call('HMGET', tag .. ':r:' .. room, 'c', 'u')
  out[#out + 1] = room
  out[#out + 1] = tonumber(counts[1] or '0')
  out[#out + 1] = tonumber(counts[2] or '0')
end
return out
