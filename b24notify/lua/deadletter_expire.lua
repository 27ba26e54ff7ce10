-- KEYS: deadletter
-- ARGV: delivery_prefix limit oldest
-- Dead-letter entries whose delivery record is gone (deadletter.py): entries that died before
-- ARGV[3] (their records expire then), then, oldest first, entries whose record is gone anyway:
-- records die in the order their entries were written, so the walk stops at the first entry
-- whose record still exists.
-- KEYS[1] dead-letter zset; ARGV[1] delivery key prefix, ARGV[2] most entries to look at,
-- ARGV[3] oldest death time kept
-- Returns how many entries were removed.
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then break end
  redis.call('ZREM', KEYS[1], id)
  removed = removed + 1
end
return removed
