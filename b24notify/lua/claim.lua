-- KEYS: due lease token counter since strikes
-- ARGV: now limit lease_seconds only gather solo_from
-- Lease up to ARGV[2] members that are due at ARGV[1], so that exactly one worker works on each.
-- A claimed member leaves the due zset and enters the lease zset with a deadline; a fencing token
-- (from a counter) lets later writes prove they still hold the lease.
-- A suspect member (ARGV[6] strikes or more in KEYS[6]: its last runs failed or never finished)
-- is claimed alone: when its run dies again, it takes no healthy member down with it, and the
-- strike lands on the member that deserves it. A batch that died once (one strike each, most often
-- a deploy or an unrelated crash) is claimed together again as usual.
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] token hash, KEYS[4] token counter,
-- KEYS[5] since hash (the debounce's first-event times, cleared for what is claimed),
-- KEYS[6] strikes hash
-- ARGV[1] now, ARGV[2] limit, ARGV[3] lease seconds, ARGV[4] optional: claim only this member,
-- ARGV[5] optional gather window: once anything is due, also take members due within it,
-- ARGV[6] strikes from which a member is claimed alone
-- Returns a flat list: member1, token1, member2, token2, ...
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local deadline = now + tonumber(ARGV[3])
local solo_from = tonumber(ARGV[6] or '0') or 0
local due
if ARGV[4] and ARGV[4] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[4])
  due = {}
  if score and tonumber(score) <= now then due = {ARGV[4]} end
else
  local horizon = now
  local gather = tonumber(ARGV[5] or '0') or 0
  if gather > 0 and #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1) > 0 then
    horizon = now + gather
  end
  due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon, 'LIMIT', 0, limit)
end
local claimed = {}
for _, member in ipairs(due) do
  local suspect = solo_from > 0 and tonumber(redis.call('HGET', KEYS[6], member) or '0') >= solo_from
  -- A suspect behind others stays due: being the earliest then, it is the next claim, alone.
  if not suspect or #claimed == 0 then
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZADD', KEYS[2], deadline, member)
    local token = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[3], member, token)
    redis.call('HDEL', KEYS[5], member)
    claimed[#claimed + 1] = member
    claimed[#claimed + 1] = tostring(token)
    if suspect then break end
  end
end
return claimed
