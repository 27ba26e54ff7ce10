-- KEYS: tat
-- ARGV: emission tau action seconds
-- One REST budget for the whole fleet: a GCRA (generic cell rate algorithm) limiter shared by
-- every worker process and machine, so that together they stay under the portal's leaky bucket.
-- The clock is Redis's own (TIME), so workers with skewed clocks still agree.
-- KEYS[1] the portal's theoretical arrival time (TAT, unix seconds, float as a string)
-- ARGV[1] emission interval T (seconds per request), ARGV[2] burst tolerance tau (seconds),
-- ARGV[3] "take" to spend one request when allowed, "penalize" to make the next request wait ARGV[4] s
-- Returns the seconds to wait before a request may go (0 = it went now), as a string.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local emission = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if ARGV[3] == 'penalize' then
  local until_ = now + tonumber(ARGV[4]) + tau
  if until_ > tat then tat = until_ end
  redis.call('SET', KEYS[1], tostring(tat), 'EX', math.ceil(tat - now + tau + 60))
  return tostring(tat - now)
end
local wait = tat - tau - now
if wait > 0 then
  return tostring(wait)
end
tat = tat + emission
redis.call('SET', KEYS[1], tostring(tat), 'EX', math.ceil(tat - now + tau + 60))
return '0'
