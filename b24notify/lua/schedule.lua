-- Ask for one run of a member (a task to sync, a delivery to attempt) at ARGV[2].
-- Coalescing lives here:
-- * a member being worked on right now (leased) gets a "pending" mark instead, which
--   release/reap turn into exactly one more run after the current one;
-- * without a debounce cap (ARGV[6] = 0) a member already due keeps the earlier of its two times
--   (ZADD LT);
-- * with one (ARGV[6] > 0, used for events) the debounce trails: every event pushes the run to
--   ARGV[2] (= now + debounce), but never past the first event's time + ARGV[6]. A burst of events
--   for one task becomes one fetch after the burst, and a busy task still runs every ARGV[6] s.
--   An event also pulls in a run that a backoff had put further ahead than that.
-- * in a burst (ARGV[9] > 0 and at least that many events in this second or the one before,
--   counted in KEYS[9]) the run trails the task's last event by the whole cap instead (a read
--   while its burst is still arriving only means reading it again, and a burst is exactly when the
--   portal's REST budget is scarce), never later than three caps after its first event, and falls
--   due on a 2 s grid so the tasks of a burst are claimed together and fill batches.
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] pending hash, KEYS[4] since hash (first event
-- time of a waiting member), KEYS[5] drop set (optional), KEYS[6] metrics hash (optional),
-- KEYS[7] watch activity zset, KEYS[8] watch next-poll zset (optional, events only)
-- ARGV[1] member, ARGV[2] due at (unix s), ARGV[3] "1" to also mark the member for drop,
-- ARGV[4] metrics field to increment ("" for none), ARGV[5] now, ARGV[6] debounce cap seconds,
-- ARGV[7] task id for the watch set, ARGV[8] its first poll interval,
-- KEYS[9] intake rate ("window start|events|events in the window before", optional), ARGV[9] burst threshold in events/s
-- Returns 1 when a new run was scheduled, 0 when it folded into one already due or pending.
local member = ARGV[1]
local at = tonumber(ARGV[2])
local cap = tonumber(ARGV[6] or '0') or 0
local scheduled = 0
local burst = false
-- In a burst, runs fall due on a grid of BURST_SLOT seconds (the next line at or after ``wanted``,
-- never after ``latest``): the tasks of one slot are claimed together and fill batches.
local BURST_SLOT = 2
local function burst_slot(wanted, latest)
  local slot = math.ceil(wanted / BURST_SLOT) * BURST_SLOT
  if slot > latest then slot = latest end
  return slot
end
local threshold = tonumber(ARGV[9] or '0') or 0
if KEYS[9] and threshold > 0 and cap > 0 then
  -- Events in the current one-second window and in the one before it: a burst stays a burst
  -- across the window's edge instead of starting over every second.
  local now = tonumber(ARGV[5])
  local start, count, previous = string.match(redis.call('GET', KEYS[9]) or '', '^([%d.]+)|(%d+)|(%d+)$')
  start, count, previous = tonumber(start), tonumber(count), tonumber(previous)
  if not start or now - start >= 1 then
    previous = (start and now - start < 2) and count or 0
    start, count = now, 0
  end
  count = count + 1
  redis.call('SET', KEYS[9], string.format('%.3f|%d|%d', start, count, previous), 'EX', 10)
  burst = count >= threshold or previous >= threshold
end
if redis.call('ZSCORE', KEYS[2], member) then
  scheduled = redis.call('HSETNX', KEYS[3], member, ARGV[2])
else
  local current = redis.call('ZSCORE', KEYS[1], member)
  if cap <= 0 then
    scheduled = redis.call('ZADD', KEYS[1], 'LT', at, member)
  elseif not current then
    if burst then at = burst_slot(tonumber(ARGV[5]) + cap, tonumber(ARGV[5]) + cap * 3) end
    redis.call('ZADD', KEYS[1], at, member)
    redis.call('HSET', KEYS[4], member, ARGV[5])
    scheduled = 1
  else
    local since = tonumber(redis.call('HGET', KEYS[4], member) or '')
    if not since then
      since = tonumber(ARGV[5])
      redis.call('HSET', KEYS[4], member, ARGV[5])
    end
    local target = math.max(tonumber(current), at)
    if burst then
      -- Trailing by the cap while the burst lasts, but never past BURST_SPAN caps after the
      -- task's first event: a task is read once, after its part of the burst.
      target = burst_slot(tonumber(ARGV[5]) + cap, since + cap * 3)
    elseif target > since + cap then
      target = since + cap
    end
    redis.call('ZADD', KEYS[1], target, member)
  end
end
if ARGV[3] == '1' and KEYS[5] then
  redis.call('SADD', KEYS[5], member)
end
if ARGV[4] ~= '' and KEYS[6] then
  redis.call('HINCRBY', KEYS[6], ARGV[4], 1)
end
if KEYS[8] and ARGV[7] then
  -- An event means the task is active: reconciliation polls it often from now on.
  redis.call('ZADD', KEYS[7], ARGV[5], ARGV[7])
  redis.call('ZADD', KEYS[8], 'NX', tonumber(ARGV[5]) + tonumber(ARGV[8]), ARGV[7])
end
return scheduled
