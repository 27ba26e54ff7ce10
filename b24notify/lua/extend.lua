-- KEYS: lease token
-- ARGV: deadline held...
-- Renew leases at the start of a job: a claim waits in the RQ queue before a worker runs it, and
-- that wait must not eat the time the job needs. Only claims whose token still matches are
-- renewed; the others were reaped and handed to someone else, and the job must skip them.
-- KEYS[1] lease zset, KEYS[2] token hash
-- ARGV[1] new deadline, then member, token, member, token, ...
-- Returns the members still held (now renewed).
local held = {}
for i = 2, #ARGV, 2 do
  local member, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[2], member) == token then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], member)
    held[#held + 1] = member
  end
end
return held
