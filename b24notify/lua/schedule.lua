-- Ask for one run of a member (a task to sync, a delivery to attempt) at ARGV[2] or later.
-- Coalescing lives here: a member already due keeps the earlier of its two times (ZADD LT), so a
-- burst of events inside the debounce window becomes one run, and an event pulls in a run that a
-- backoff had put far ahead (fresh evidence is worth a try; a halted portal is checked by the job); a member being worked on right now (leased)
-- gets a "pending" mark instead, which complete/retry/reap turn into exactly one more run.
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] pending hash,
-- KEYS[4] drop set (optional), KEYS[5] metrics hash (optional)
-- ARGV[1] member, ARGV[2] due at (unix s), ARGV[3] "1" to also mark the member for drop,
-- ARGV[4] metrics field to increment ("" for none)
-- Returns 1 when a new run was scheduled, 0 when it folded into one already due or pending.
local member = ARGV[1]
local scheduled = 0
if redis.call('ZSCORE', KEYS[2], member) then
  scheduled = redis.call('HSETNX', KEYS[3], member, ARGV[2])
else
  scheduled = redis.call('ZADD', KEYS[1], 'LT', ARGV[2], member)
end
if ARGV[3] == '1' and KEYS[4] then
  redis.call('SADD', KEYS[4], member)
end
if ARGV[4] ~= '' and KEYS[5] then
  redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
end
return scheduled
