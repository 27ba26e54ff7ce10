-- KEYS: due lease pending since drop metrics watch_active watch_next intake_rate window wake trace triggers
-- ARGV: member at also_drop metrics_field now debounce_cap task_id first_poll burst_threshold trigger event trace_maxlen trace_ttl
-- Ask for one run of a member (a task to sync, a delivery to attempt) at ARGV[2].
-- Coalescing lives here:
-- * a member being worked on right now (leased) gets a "pending" mark instead, which
--   release/reap turn into exactly one more run after the current one;
-- * without a debounce cap (ARGV[6] = 0) a member already due keeps the earlier of its two times
--   (ZADD LT);
-- * with one (ARGV[6] > 0, used for events) and a quiet fleet (at most a tenth of the burst
--   threshold in events in the current one-second window; always when burst mode is off), the
--   debounce has a leading edge. Bitrix24 sends an event at the end of the request that made the
--   change, so the change is readable when the event arrives: a task with no read asked for within
--   the last debounce window (D = ARGV[2] - now) is read at once, and the read opens a window of D
--   (KEYS[10], member -> window end). Events inside an open window ask for one more read, at the
--   window's end (which opens the next window); events already covered by a read not yet made fold
--   into it. A lone event costs one read, with no wait; a task that keeps changing is read once
--   per D. An event also pulls in a run that a backoff had put further ahead, down to the cap.
-- * with a cap but a fleet that is not quiet (below the burst threshold), the debounce trails:
--   every event pushes the run to ARGV[2] (= now + debounce), but never past the first event's
--   time + ARGV[6]. A busy task still runs every ARGV[6] s.
-- * in a burst (ARGV[9] > 0 and at least that many events in this second or the one before,
--   counted in KEYS[9]) the run trails the task's last event by the whole cap instead (a read
--   while its burst is still arriving only means reading it again, and a burst is exactly when the
--   portal's REST budget is scarce), never later than three caps after its first event, and falls
--   due on a 2 s grid so the tasks of a burst are claimed together and fill batches.
-- Wake-up: when a run becomes due earlier than anything else in the due set (what the dispatchers
-- are waiting for), a token goes onto the wake list KEYS[11]; dispatchers wait on it with BLPOP.
-- Trace (trace.py): with a trigger (ARGV[10]: event, sweep, manual; "" for none) the step goes onto
-- the portal's trace stream KEYS[12], capped (XADD MAXLEN ~ ARGV[12]) and expiring (ARGV[13] s):
-- an event step (ARGV[11] the event's name) or a scheduled one, with whether it folded into a run
-- already asked for; and the trigger is kept for the run's sync step in KEYS[13] (member -> trigger).
-- KEYS[1] due zset, KEYS[2] lease zset, KEYS[3] pending hash, KEYS[4] since hash (first event
-- time of a waiting member), KEYS[5] drop set (used when ARGV[3] = "1"), KEYS[6] metrics hash
-- (used when ARGV[4] ~= ""), KEYS[7] watch activity zset, KEYS[8] watch next-poll zset (used when
-- ARGV[7] ~= ""), KEYS[9] intake rate ("window start|events|events in the window before", used
-- when ARGV[9] > 0), KEYS[10] debounce windows zset, KEYS[11] wake list, KEYS[12] trace stream and
-- KEYS[13] triggers hash (used when ARGV[10] ~= "")
-- ARGV[1] member, ARGV[2] due at (unix s), ARGV[3] "1" to also mark the member for drop,
-- ARGV[4] metrics field to increment ("" for none), ARGV[5] now, ARGV[6] debounce cap seconds,
-- ARGV[7] task id for the watch set, ARGV[8] its first poll interval,
-- ARGV[9] burst threshold in events/s, ARGV[10] trigger ("" for no trace), ARGV[11] event name,
-- ARGV[12] trace cap (entries), ARGV[13] trace TTL seconds
-- Returns 1 when a new run was scheduled, 0 when it folded into one already due or pending.
local member = ARGV[1]
local at = tonumber(ARGV[2])
local now = tonumber(ARGV[5])
local cap = tonumber(ARGV[6] or '0') or 0
local scheduled = 0
local burst = false
local quiet = true
-- The fleet is quiet (leading edge on) up to this share of the burst threshold: the first events
-- of a burst would otherwise each cost a read of their own before burst mode folds the rest.
local QUIET_SHARE = 10
-- A trigger waits for its run at most this long (the hash's TTL, renewed by every write).
local TRIGGER_TTL = 86400
-- In a burst, runs fall due on a grid of BURST_SLOT seconds (the next line at or after ``wanted``,
-- never after ``latest``): the tasks of one slot are claimed together and fill batches.
local BURST_SLOT = 2
local function burst_slot(wanted, latest)
  local slot = math.ceil(wanted / BURST_SLOT) * BURST_SLOT
  if slot > latest then slot = latest end
  return slot
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local first_due = tonumber(first[2] or '')
-- A run at ``when`` that comes before everything else due: wake a dispatcher (a few tokens at
-- most, and they expire: a dispatcher that finds nothing to claim just waits again).
local function due_at(when)
  redis.call('ZADD', KEYS[1], when, member)
  if KEYS[11] and (not first_due or when < first_due) then
    redis.call('LPUSH', KEYS[11], '1')
    redis.call('LTRIM', KEYS[11], 0, 3)
    redis.call('EXPIRE', KEYS[11], 60)
  end
end
local threshold = tonumber(ARGV[9] or '0') or 0
if KEYS[9] and threshold > 0 and cap > 0 then
  -- Events in the current one-second window and in the one before it: a burst stays a burst
  -- across the window's edge instead of starting over every second.
  local start, count, previous = string.match(redis.call('GET', KEYS[9]) or '', '^([%d.]+)|(%d+)|(%d+)$')
  start, count, previous = tonumber(start), tonumber(count), tonumber(previous)
  if not start or now - start >= 1 then
    previous = (start and now - start < 2) and count or 0
    start, count = now, 0
  end
  count = count + 1
  redis.call('SET', KEYS[9], string.format('%.3f|%d|%d', start, count, previous), 'EX', 10)
  burst = count >= threshold or previous >= threshold
  local quiet_limit = math.max(1, math.floor(threshold / QUIET_SHARE))
  -- The current window only: a burst's first events are what this keeps from costing a read each;
  -- a portal past a busy second is quiet again as soon as it is.
  quiet = count <= quiet_limit
end
local window = at - now
local leading = cap > 0 and window > 0 and KEYS[10] ~= nil and quiet and not burst
local window_end = nil
if leading then
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', now)  -- windows that closed
  window_end = tonumber(redis.call('ZSCORE', KEYS[10], member) or '')
end
-- A read at ``when`` opens a window until ``when`` + D: events until then wait for its end.
local function open_window(when)
  redis.call('ZADD', KEYS[10], when + window, member)
  local ttl_ms = math.ceil((when + window - now) * 1000) + 1000
  if redis.call('PTTL', KEYS[10]) < ttl_ms then redis.call('PEXPIRE', KEYS[10], ttl_ms) end
end
if redis.call('ZSCORE', KEYS[2], member) then
  if leading then
    -- The run now in progress may have read before this change: one more, at once after it
    -- when no window is open (a run not asked for by an event), else at the window's end.
    local wanted = window_end or now
    scheduled = redis.call('HSETNX', KEYS[3], member, wanted)
    if scheduled == 1 then open_window(wanted) end
  else
    scheduled = redis.call('HSETNX', KEYS[3], member, ARGV[2])
  end
else
  local current = tonumber(redis.call('ZSCORE', KEYS[1], member) or '')
  if cap <= 0 then
    -- The earlier of the two times (ZADD LT).
    if not current then scheduled = 1 end
    if not current or at < current then due_at(at) end
  elseif leading then
    local wanted = window_end or now
    local target = wanted
    if not current then
      due_at(wanted)
      redis.call('HSET', KEYS[4], member, ARGV[5])
      scheduled = 1
    elseif current > wanted then
      -- A backoff put the run further ahead: the event pulls it in, down to the cap.
      local since = tonumber(redis.call('HGET', KEYS[4], member) or '')
      if not since then
        since = now
        redis.call('HSET', KEYS[4], member, ARGV[5])
      end
      target = math.max(wanted, math.min(current, since + cap))
      if target < current then due_at(target) end
    else
      target = current  -- a read not made yet covers this change
    end
    open_window(target)
  elseif not current then
    if burst then at = burst_slot(now + cap, now + cap * 3) end
    due_at(at)
    redis.call('HSET', KEYS[4], member, ARGV[5])
    scheduled = 1
  else
    local since = tonumber(redis.call('HGET', KEYS[4], member) or '')
    if not since then
      since = now
      redis.call('HSET', KEYS[4], member, ARGV[5])
    end
    local target = math.max(current, at)
    if burst then
      -- Trailing by the cap while the burst lasts, but never past three caps after the task's
      -- first event: a task is read once, after its part of the burst.
      target = burst_slot(now + cap, since + cap * 3)
    elseif target > since + cap then
      target = since + cap
    end
    due_at(target)
  end
end
if ARGV[3] == '1' and KEYS[5] then
  redis.call('SADD', KEYS[5], member)
end
if ARGV[4] and ARGV[4] ~= '' and KEYS[6] then
  redis.call('HINCRBY', KEYS[6], ARGV[4], 1)
end
if KEYS[8] and ARGV[7] and ARGV[7] ~= '' then
  -- An event means the task is active: reconciliation polls it often from now on.
  redis.call('ZADD', KEYS[7], ARGV[5], ARGV[7])
  redis.call('ZADD', KEYS[8], 'NX', tonumber(ARGV[5]) + tonumber(ARGV[8]), ARGV[7])
end
local trigger = ARGV[10] or ''
if trigger ~= '' and KEYS[13] then
  local task = string.match(member, '|(%d+)$') or ''
  local coalesced = scheduled == 1 and '0' or '1'
  if trigger == 'event' then
    redis.call('XADD', KEYS[12], 'MAXLEN', '~', ARGV[12], '*', 'task', task, 'kind', 'event', 'event', ARGV[11],
               'coalesced', coalesced)
  else
    redis.call('XADD', KEYS[12], 'MAXLEN', '~', ARGV[12], '*', 'task', task, 'kind', 'scheduled', 'trigger', trigger,
               'coalesced', coalesced)
  end
  redis.call('EXPIRE', KEYS[12], ARGV[13])
  redis.call('HSET', KEYS[13], member, trigger)
  redis.call('EXPIRE', KEYS[13], TRIGGER_TTL)
end
return scheduled
