-- End a lease: the work is done (ARGV[3] = "") or must run again at ARGV[3] (a retry).
-- Does nothing when the token no longer matches: the lease expired and someone else holds it.
-- An event that arrived during the run (pending mark) becomes one more run: at its own time, or
-- at the retry time when that is later (a retry waits out a rate limit; the event can wait too).
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] token hash, KEYS[4] pending hash
-- ARGV[1] member, ARGV[2] token, ARGV[3] retry at ("" for done)
-- Returns 1 when released, 0 when the lease was stale.
local member = ARGV[1]
if redis.call('HGET', KEYS[3], member) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[2], member)
redis.call('HDEL', KEYS[3], member)
local pending = redis.call('HGET', KEYS[4], member)
redis.call('HDEL', KEYS[4], member)
local at = nil
if ARGV[3] ~= '' then at = tonumber(ARGV[3]) end
if pending then
  local p = tonumber(pending)
  if at == nil or p > at then at = p end
end
if at ~= nil then
  redis.call('ZADD', KEYS[1], 'LT', at, member)
end
return 1
