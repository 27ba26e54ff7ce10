-- Give back the leases whose deadline passed: their worker died or hung. Each member becomes due
-- now, so a crash leads to another run, never to silence. The fencing token is removed, so a
-- late write by the old holder is refused.
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] token hash, KEYS[4] pending hash
-- ARGV[1] now, ARGV[2] limit
-- Returns the reaped members.
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[2], member)
  redis.call('HDEL', KEYS[3], member)
  redis.call('HDEL', KEYS[4], member)
  redis.call('ZADD', KEYS[1], 'LT', ARGV[1], member)
end
return expired
