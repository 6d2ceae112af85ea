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

-- Stores the counts (or deletes the aggregate when empty). Returns changed, joined, left; the
-- member changes are net over the step and listed only while the room has at most `cap` members.
local function finish(t, cap)
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
  local truncated = false
  if cap and tonumber(redis.call('HLEN', t.keys.members)) > cap then
    joined, left, truncated = {}, {}, true
  end
  return changed, joined, left, truncated
end
