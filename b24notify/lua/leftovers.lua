-- KEYS: due lease parked attempts drop
-- ARGV:
-- Due-set leftovers nothing will read again (workers/upkeep.py): a failure count or a drop mark
-- of a task that is neither due, nor being worked on, nor parked (a task of a portal that left).
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] parked hash, KEYS[4] attempts hash, KEYS[5] drop set
-- Returns how many leftovers were removed.
local function orphan(member)
  return not redis.call('ZSCORE', KEYS[1], member) and not redis.call('ZSCORE', KEYS[2], member)
    and redis.call('HEXISTS', KEYS[3], member) == 0
end
local removed = 0
for _, member in ipairs(redis.call('HKEYS', KEYS[4])) do
  if orphan(member) then removed = removed + redis.call('HDEL', KEYS[4], member) end
end
for _, member in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if orphan(member) then removed = removed + redis.call('SREM', KEYS[5], member) end
end
return removed
