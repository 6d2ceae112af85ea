-- ARGV: tag, room, low (ZRANGEBYLEX bound), limit. One page of a room's signed members in
-- user-id order: [user, sockets, info or false, ...].
local tag, room, low, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
for _, user in ipairs(redis.call('ZRANGEBYLEX', tag .. ':l:' .. room, low, '+', 'LIMIT', 0, limit)) do
  out[#out + 1] = user
  out[#out + 1] = tonumber(redis.call('HGET', tag .. ':m:' .. room, user) or '0')
  out[#out + 1] = redis.call('HGET', tag .. ':i:' .. room, user) or false
end
return out
