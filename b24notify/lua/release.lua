-- KEYS: due lease token pending strikes parked attempts
-- ARGV: member claim_token at record keep_strikes
-- End a lease: the work is done (ARGV[3] = ""), must run again at ARGV[3] (a retry), or the
-- member is parked (ARGV[3] = "park"): it failed too often for a cause of its own and leaves the
-- due set, recorded with its reason in KEYS[6], until an event or an operator asks for a run.
-- Does nothing when the token no longer matches: the lease expired and someone else holds it.
-- An event that arrived during the run (pending mark) becomes one more run: at its own time, or
-- at the retry time when that is later (a retry waits out a rate limit; the event can wait too).
-- For a parked member too: a new event is exactly what may let it pass now (see DueSet.park).
-- Done clears the member's strikes, failures and park record: it ran cleanly.
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] token hash, KEYS[4] pending hash,
-- KEYS[5] strikes hash, KEYS[6] parked hash, KEYS[7] attempts hash (failures in a row)
-- ARGV[1] member, ARGV[2] token, ARGV[3] retry at, "" for done, or "park",
-- ARGV[4] park record (JSON), ARGV[5] strikes the member keeps while parked
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
if ARGV[3] == 'park' then
  redis.call('HSET', KEYS[6], member, ARGV[4])
  redis.call('HSET', KEYS[5], member, ARGV[5])
elseif ARGV[3] ~= '' then
  at = tonumber(ARGV[3])
else
  redis.call('HDEL', KEYS[5], member)
  redis.call('HDEL', KEYS[6], member)
  redis.call('HDEL', KEYS[7], member)
end
if pending then
  local p = tonumber(pending)
  if at == nil or p > at then at = p end
end
if at ~= nil then
  redis.call('ZADD', KEYS[1], 'LT', at, member)
end
return 1
