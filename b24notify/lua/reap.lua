-- KEYS: due lease token pending strikes
-- ARGV: now limit
-- Give back the leases whose deadline passed: their worker died or hung. Each member becomes due
-- now, so a crash leads to another run, never to silence. The fencing token is removed, so a
-- late write by the old holder is refused.
-- A reaped run is a failed run: it counts a strike (KEYS[5]), like an exception would have. That
-- is how a member that kills or hangs its worker every time is noticed at all: from two strikes
-- on it is claimed alone (claim.lua), so it no longer takes its batch down with it, and the sync
-- parks a task that reaches B24NOTIFY_TASK_MAX_ATTEMPTS strikes.
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] token hash, KEYS[4] pending hash,
-- KEYS[5] strikes hash (member -> runs in a row that failed for a cause of its own)
-- ARGV[1] now, ARGV[2] limit
-- Returns the reaped members.
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[2], member)
  redis.call('HDEL', KEYS[3], member)
  redis.call('HDEL', KEYS[4], member)
  redis.call('HINCRBY', KEYS[5], member, 1)
  redis.call('ZADD', KEYS[1], 'LT', ARGV[1], member)
end
return expired
