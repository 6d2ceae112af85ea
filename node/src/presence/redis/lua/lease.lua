-- KEYS[1] the group's lease key; ARGV: node, ttl (ms). Takes the lease if free, keeps it if held
-- by this node. Returns 1 while this node holds it, 0 otherwise.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
