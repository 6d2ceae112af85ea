-- ARGV[1]: {node, inc, sharded, global = {tag} (optional), groups = [{tag, g}]}. Removes the node,
-- its global share and every room share it holds in the listed groups, announcing each drop
-- (graceful shutdown). On a Redis Cluster each slot is its own call: groups first, global last.
local p = cjson.decode(ARGV[1])
local node, cap = p.node, tonumber(p.cap)
-- On a Redis Cluster announcements go on sharded channels: each in its own slot's shard.
local PUBLISH = p.sharded and 'SPUBLISH' or 'PUBLISH'
for _, gp in ipairs(p.groups) do
  local T = gp.tag
  local changed = {}
  local events = new_events(p.ev)
  local set = T .. ':n:' .. node
  for _, room in ipairs(redis.call('SMEMBERS', set)) do
    local t = new_trace(room_keys(T, room))
    remove_node(t, node)
    local _, joined, left, members = finish(t)
    room_events(events, T, room, t, joined, left)
    if t.c > 0 then redis.call('ZADD', T .. ':rooms', 0, room) else redis.call('ZREM', T .. ':rooms', room) end
    local listed = members <= cap
    changed[#changed + 1] = {room, t.c, t.u, listed and joined or {}, listed and left or {}, not listed}
  end
  redis.call('DEL', set)
  redis.call('HDEL', T .. ':inc', node)
  if #changed > 0 then
    local version = tonumber(redis.call('GET', T .. ':v') or '0') + 1
    redis.call('SET', T .. ':v', version)
    redis.call(PUBLISH, T .. ':updates', string.format('{"g":%d,"v":%d,"rooms":%s,"reaped":[],"at":%d}', gp.g, version, cjson.encode(changed), now))
    append_events(events, T, version)
  end
end
if p.global then
  local G = p.global.tag
  local t = new_trace(global_keys(G))
  remove_node(t, node)
  finish(t)
  redis.call('ZREM', G .. ':nodes', node)
  redis.call('HDEL', G .. ':inc', node)
  redis.call('HDEL', G .. ':groups', node)
  redis.call('SET', G .. ':clock', now)
  local version = tonumber(redis.call('GET', G .. ':v') or '0') + 1
  redis.call('SET', G .. ':v', version)
  redis.call(PUBLISH, G .. ':updates', string.format('{"v":%d,"c":%d,"u":%d,"reaped":[],"at":%d}', version, t.c, t.u, now))
end
return 'ok'
