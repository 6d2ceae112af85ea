-- Shared by every script: the Redis clock, and the arithmetic of an aggregate (the global count or
-- one room summed over its nodes). The key layout is documented in ARCHITECTURE.md; every name is
-- built from a hash tag passed by the caller, so all keys of one call live in one cluster slot.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- An aggregate's keys: `agg` (hash: c = sockets, u = users, n:<node> = "sockets,anonymous"),
-- `members` (hash: user -> sockets over all nodes), `cells(node)` (hash: user -> that node's
-- sockets); rooms also keep `info` (hash: user -> public info) and `listing` (zset of users).
local function room_keys(tag, room)
  return {
    agg = tag .. ':r:' .. room, members = tag .. ':m:' .. room, info = tag .. ':i:' .. room,
    listing = tag .. ':l:' .. room,
    cells = function(node) return tag .. ':u:' .. #node .. ':' .. node .. ':' .. room end,
  }
end

local function global_keys(tag)
  return {
    agg = tag .. ':agg', members = tag .. ':m',
    cells = function(node) return tag .. ':u:' .. node end,
  }
end

-- What a step did to one aggregate: counts before, users touched (with their sockets before).
local function new_trace(k)
  local c = tonumber(redis.call('HGET', k.agg, 'c') or '0')
  local u = tonumber(redis.call('HGET', k.agg, 'u') or '0')
  return { keys = k, c0 = c, u0 = u, c = c, u = u, users = {}, order = {} }
end

local function touch_user(t, user)
  if t.users[user] == nil then
    local before = tonumber(redis.call('HGET', t.keys.members, user) or '0')
    local info = false
    if t.keys.info and before > 0 then info = redis.call('HGET', t.keys.info, user) or false end
    t.users[user] = { before = before, info = info }
    t.order[#t.order + 1] = user
  end
end

-- Sets `node`'s sockets of `user` to `n` (absolute).
local function set_cell(t, node, user, n, info)
  touch_user(t, user)
  local cells = t.keys.cells(node)
  local old = tonumber(redis.call('HGET', cells, user) or '0')
  if n > 0 then redis.call('HSET', cells, user, n) else redis.call('HDEL', cells, user) end
  if t.keys.info and info and info ~= cjson.null then redis.call('HSET', t.keys.info, user, info) end
  if n == old then return end
  local total = tonumber(redis.call('HGET', t.keys.members, user) or '0') + n - old
  local before = total - n + old
  if total > 0 then
    redis.call('HSET', t.keys.members, user, total)
    if before <= 0 then
      t.u = t.u + 1
      if t.keys.listing then redis.call('ZADD', t.keys.listing, 0, user) end
    end
  else
    redis.call('HDEL', t.keys.members, user)
    if before > 0 then
      t.u = t.u - 1
      if t.keys.listing then redis.call('ZREM', t.keys.listing, user) end
      if t.keys.info then redis.call('HDEL', t.keys.info, user) end
    end
  end
end

-- Sets `node`'s share: `c` sockets, `a` anonymous, and the listed user cells (absolute).
local function set_share(t, node, c, a, cells)
  local old = redis.call('HGET', t.keys.agg, 'n:' .. node)
  local oc, oa = 0, 0
  if old then
    local comma = string.find(old, ',', 1, true)
    oc, oa = tonumber(string.sub(old, 1, comma - 1)), tonumber(string.sub(old, comma + 1))
  end
  t.c = t.c + c - oc
  t.u = t.u + a - oa
  if c > 0 then
    redis.call('HSET', t.keys.agg, 'n:' .. node, c .. ',' .. a)
  else
    redis.call('HDEL', t.keys.agg, 'n:' .. node)
  end
  for _, cell in ipairs(cells) do set_cell(t, node, cell[1], tonumber(cell[2]), cell[3]) end
end

-- Removes every share of `node`; true if it held one.
local function remove_node(t, node)
  if not redis.call('HGET', t.keys.agg, 'n:' .. node) then return false end
  local cells = redis.call('HGETALL', t.keys.cells(node))
  local listed = {}
  for i = 1, #cells, 2 do listed[#listed + 1] = {cells[i], 0, false} end
  set_share(t, node, 0, 0, listed)
  redis.call('DEL', t.keys.cells(node))
  return true
end

-- Stores the counts (or deletes the aggregate when empty). Returns changed, joined, left (net over
-- the step, each `{user, info}`) and the number of members left.
local function finish(t)
  local joined, left = {}, {}
  for _, user in ipairs(t.order) do
    local before = t.users[user].before
    local after = tonumber(redis.call('HGET', t.keys.members, user) or '0')
    if before <= 0 and after > 0 then
      local info = false
      if t.keys.info then info = redis.call('HGET', t.keys.info, user) or false end
      joined[#joined + 1] = {user, info}
    elseif before > 0 and after <= 0 then
      left[#left + 1] = {user, t.users[user].info}
    end
  end
  if t.c > 0 then
    redis.call('HSET', t.keys.agg, 'c', t.c, 'u', t.u)
  else
    local k = t.keys
    redis.call('DEL', k.agg, k.members)
    if k.info then redis.call('DEL', k.info, k.listing) end
    t.u = 0
  end
  local changed = t.c ~= t.c0 or t.u ~= t.u0 or #joined > 0 or #left > 0
  return changed, joined, left, tonumber(redis.call('HLEN', t.keys.members))
end

-- Webhook events (`ev`, from the payload: on, types, delay, max; nil when webhooks are off) are
-- produced in the step that causes them and appended to the group's stream with its version.
-- `room.vacated` waits `delay` ms in `T:vacating`: a room occupied again meanwhile produces
-- neither vacated nor occupied (a page reload).
local function new_events(ev)
  if not ev or ev == cjson.null then return nil end
  local types = {}
  for _, kind in ipairs(ev.types) do types[kind] = true end
  return { types = types, delay = tonumber(ev.delay), max = tonumber(ev.max), list = {} }
end

local function add_event(events, kind, room, member)
  if events and events.types[kind] then
    events.list[#events.list + 1] = { kind, room, member and member[1] or false, member and member[2] or false }
  end
end

-- The events of one room's change in this step.
local function room_events(events, T, room, t, joined, left)
  if not events then return end
  if t.c0 == 0 and t.c > 0 and redis.call('ZREM', T .. ':vacating', room) == 0 then
    add_event(events, 'room.occupied', room)
  end
  for _, m in ipairs(joined) do add_event(events, 'member.joined', room, m) end
  for _, m in ipairs(left) do add_event(events, 'member.left', room, m) end
  if t.c0 > 0 and t.c == 0 then redis.call('ZADD', T .. ':vacating', now + events.delay, room) end
end

-- `room.vacated` for rooms empty since their delay; returns the earliest still waiting (or false).
local function due_vacates(events, T)
  if not events then return false end
  for _, room in ipairs(redis.call('ZRANGEBYSCORE', T .. ':vacating', '-inf', now, 'LIMIT', 0, 200)) do
    redis.call('ZREM', T .. ':vacating', room)
    if redis.call('EXISTS', T .. ':r:' .. room) == 0 then add_event(events, 'room.vacated', room) end
  end
  local next = redis.call('ZRANGE', T .. ':vacating', 0, 0, 'WITHSCORES')
  return next[2] and tonumber(next[2]) or false
end

-- Appends the step's events to the group's stream, each with the step's version.
local function append_events(events, T, version)
  if not events then return end
  for _, e in ipairs(events.list) do
    local body = { type = e[1], room = e[2], at = now, version = version }
    if e[3] then body.user = e[3] end
    if e[4] then body.info = cjson.decode(e[4]) end
    redis.call('XADD', T .. ':events', 'MAXLEN', '~', events.max, '*', 'e', cjson.encode(body))
  end
end
