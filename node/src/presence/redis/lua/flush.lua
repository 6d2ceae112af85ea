-- One flush of one node, for the parts of it that live in this call's slot (on a single Redis:
-- all of it). ARGV[1] is the payload (JSON):
--   node, inc (0 before the first reply), ttl (ms), cap (members listed), sharded (announce with
--   SPUBLISH: on a Redis Cluster, where each part runs as its own call in its own slot), and
--   global = {tag, floor, c, a, u = [[user, n, info]...], groups = [...], done = [[node, inc]...]}
--   groups = [{tag, g, floor, rooms = [[room, c, a, [[user, n, info]...]]...], reap = [[node, inc]...]}]
-- KEYS name one key of each part (routing only); every key is built from the parts' tags.
-- Returns the JSON reply (see presence/redis/reply.rs).
local p = cjson.decode(ARGV[1])
local node, cap = p.node, tonumber(p.cap)
-- On a Redis Cluster announcements go on sharded channels: each in its own slot's shard.
local PUBLISH = p.sharded and 'SPUBLISH' or 'PUBLISH'

local function json_list(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end

-- The global step: outage forgiveness, registration, reaping, heartbeat, the node's share.
local function global_step(gp)
  local G = gp.tag
  local agg, nodes, clock_key, incs, reaping, held = G .. ':agg', G .. ':nodes', G .. ':clock', G .. ':inc', G .. ':reaping', G .. ':groups'
  local ttl = tonumber(p.ttl)
  -- Live nodes heartbeat more often than every ttl / 2: no script for that long means Redis itself
  -- was unreachable, and deadlines ran out on its clock. Move them by the gap; reap nobody for it.
  local last = tonumber(redis.call('GET', clock_key) or now)
  if now - last > ttl / 2 then
    local entries = redis.call('ZRANGE', nodes, 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do redis.call('ZADD', nodes, tonumber(entries[i + 1]) + now - last, entries[i]) end
  end
  redis.call('SET', clock_key, now)
  local t = new_trace(global_keys(G))
  local reaped, forced = {}, false
  local function bury(id, inc)
    remove_node(t, id)
    local groups = redis.call('HGET', held, id) or '[]'
    if inc then redis.call('HSET', reaping, id .. '#' .. inc, '{"node":' .. cjson.encode(id) .. ',"incarnation":' .. inc .. ',"groups":' .. groups .. '}') end
    redis.call('HDEL', incs, id)
    redis.call('HDEL', held, id)
    redis.call('ZREM', nodes, id)
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now)) do
    if id ~= node then
      bury(id, redis.call('HGET', incs, id))
      reaped[#reaped + 1] = id
    end
  end
  -- Registration: a node not registered under the incarnation it sends gets a new one; data an
  -- older incarnation of the same id left behind is removed (its rooms by pending reaps).
  local inc, restored = tonumber(p.inc), 0
  local stored = redis.call('HGET', incs, node)
  if inc == 0 or not stored or tonumber(stored) ~= inc or not redis.call('ZSCORE', nodes, node) then
    if stored then bury(node, stored) end
    -- The counter starts again after Redis lost its data, and a room group may already hold the
    -- number this node sent (its groups run first): never hand out a number it has had.
    local counter = G .. ':incs'
    if inc > tonumber(redis.call('GET', counter) or '0') then redis.call('SET', counter, inc) end
    inc = redis.call('INCR', counter)
    redis.call('HSET', incs, node, inc)
    restored, forced = 1, true
  end
  redis.call('ZADD', nodes, now + ttl, node)
  redis.call('HSET', held, node, json_list(gp.groups))
  for _, done in ipairs(gp.done) do redis.call('HDEL', reaping, done[1] .. '#' .. done[2]) end
  set_share(t, node, tonumber(gp.c), tonumber(gp.a), gp.u)
  local changed = finish(t)
  local version = tonumber(redis.call('GET', G .. ':v') or '0')
  if changed or forced or #reaped > 0 then
    version = math.max(version, tonumber(gp.floor)) + 1
    redis.call('SET', G .. ':v', version)
    redis.call(PUBLISH, G .. ':updates', string.format('{"v":%d,"c":%d,"u":%d,"reaped":%s,"at":%d}', version, t.c, t.u, json_list(reaped), now))
  end
  local live = {}
  local entries = redis.call('ZRANGEBYSCORE', nodes, now, '+inf', 'WITHSCORES')
  for i = 1, #entries, 2 do
    local share = redis.call('HGET', agg, 'n:' .. entries[i]) or '0,0'
    live[#live + 1] = {entries[i], tonumber(string.sub(share, 1, string.find(share, ',', 1, true) - 1)), tonumber(entries[i + 1])}
  end
  -- Stored as JSON already: passed through as they are.
  local pending = '[' .. table.concat(redis.call('HVALS', reaping), ',') .. ']'
  return string.format('{"c":%d,"u":%d,"v":%d,"inc":%d,"restored":%d,"reaped":%s,"now":%d,"ttl":%d,"nodes":%s,"pending":%s}',
    t.c, t.u, version, inc, restored, json_list(reaped), now, ttl, json_list(live), pending)
end

-- One room group's step: fence older incarnations, run reaps, set this node's room shares.
local function group_step(gp)
  local T = gp.tag
  local version_key, index, incs = T .. ':v', T .. ':rooms', T .. ':inc'
  local traces, order = {}, {}
  local function trace(room)
    if not traces[room] then
      traces[room] = new_trace(room_keys(T, room))
      order[#order + 1] = room
    end
    return traces[room]
  end
  local function wipe(id)
    local set = T .. ':n:' .. id
    for _, room in ipairs(redis.call('SMEMBERS', set)) do remove_node(trace(room), id) end
    redis.call('DEL', set)
  end
  local reaped = {}
  for _, r in ipairs(gp.reap) do
    -- The reaped incarnation or an older one: after a data loss a group can hold the number the
    -- node sent before it was given a new one (a newer incarnation's shares are kept).
    local held_inc = tonumber(redis.call('HGET', incs, r[1]) or '-1')
    if held_inc >= 0 and held_inc <= tonumber(r[2]) then
      wipe(r[1])
      redis.call('HDEL', incs, r[1])
      reaped[#reaped + 1] = r[1]
    end
  end
  local inc = tonumber(p.inc)
  if #gp.rooms > 0 then
    local stored = redis.call('HGET', incs, node)
    if stored and tonumber(stored) ~= inc then wipe(node) end
    redis.call('HSET', incs, node, inc)
  end
  local mine = T .. ':n:' .. node
  for _, r in ipairs(gp.rooms) do
    local c = tonumber(r[2])
    set_share(trace(r[1]), node, c, tonumber(r[3]), r[4])
    if c > 0 then redis.call('SADD', mine, r[1]) else redis.call('SREM', mine, r[1]) end
  end
  local events = new_events(p.ev)
  local results, announced = {}, {}
  for _, room in ipairs(order) do
    local t = traces[room]
    local changed, joined, left, members = finish(t)
    room_events(events, T, room, t, joined, left)
    if t.c > 0 then redis.call('ZADD', index, 0, room) else redis.call('ZREM', index, room) end
    local listed = members <= cap
    local entry = {room, t.c, t.u, listed and joined or {}, listed and left or {}, not listed}
    results[#results + 1] = entry
    if changed then announced[#announced + 1] = entry end
  end
  local next_due = due_vacates(events, T)
  local version = tonumber(redis.call('GET', version_key) or '0')
  local produced = events and #events.list or 0
  if #announced > 0 or #reaped > 0 or produced > 0 then
    version = math.max(version, tonumber(gp.floor)) + 1
    redis.call('SET', version_key, version)
  end
  if #announced > 0 or #reaped > 0 then
    redis.call(PUBLISH, T .. ':updates', string.format('{"g":%d,"v":%d,"rooms":%s,"reaped":%s,"at":%d}', gp.g, version, json_list(announced), json_list(reaped), now))
  end
  append_events(events, T, version)
  return string.format('{"g":%d,"v":%d,"rooms":%s,"due":%s,"events":%s}', gp.g, version, json_list(results),
    next_due and string.format('%d', math.max(0, next_due - now)) or 'null', events and json_list(events.list) or '[]')
end

local parts = {}
-- Groups first: a reap done here is acknowledged to the global part only by a later flush.
for _, gp in ipairs(p.groups) do parts[#parts + 1] = group_step(gp) end
local global = 'null'
if p.global ~= cjson.null and p.global then global = global_step(p.global) end
return '{"global":' .. global .. ',"groups":[' .. table.concat(parts, ',') .. ']}'
