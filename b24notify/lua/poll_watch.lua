-- KEYS: watch_next watch_active task_due watch_synced watch_status task_lease task_pending
-- ARGV: now limit member_prefix hot_interval warm_interval cold_interval hot_age warm_age idle_age
-- Reconciliation: results can appear with no event at all (docs/protocol.md §2), so watched tasks are
-- re-read on an adaptive schedule. This picks the watched tasks whose poll is due, asks for a
-- sync of each (the task due set, ZADD LT: never delays a sync already asked for), and sets each
-- one's next poll from how recently it was active: often when it was active lately, rarely when
-- quiet; a task quiet for longer than the idle limit leaves the watch set (its next event or a
-- discovery sweep brings it back), with everything kept for it there: its last sync time and
-- what the sweep last saw of it (a task that comes back is read afresh anyway).
-- A task being synced right now (leased) gets the pending mark instead, as an event's schedule
-- does: one more run after the current one, never a second worker on it at the same time (a due
-- entry beside the lease was claimed again by another worker, and the first one's commit refused).
-- KEYS[1] watch next-poll zset, KEYS[2] watch activity zset, KEYS[3] task due zset,
-- KEYS[4] watch synced zset, KEYS[5] watch status hash (the sweep's), KEYS[6] task lease zset,
-- KEYS[7] task pending hash
-- ARGV[1] now, ARGV[2] limit, ARGV[3] member prefix ("portal|"),
-- ARGV[4] hot interval, ARGV[5] warm interval, ARGV[6] cold interval,
-- ARGV[7] hot age, ARGV[8] warm age, ARGV[9] idle age (drop)
-- Returns {scheduled, dropped}.
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local scheduled, dropped = 0, 0
for _, task in ipairs(due) do
  local active = tonumber(redis.call('ZSCORE', KEYS[2], task) or '0')
  local age = now - active
  if age > tonumber(ARGV[9]) then
    redis.call('ZREM', KEYS[1], task)
    redis.call('ZREM', KEYS[2], task)
    redis.call('ZREM', KEYS[4], task)
    redis.call('HDEL', KEYS[5], task)
    dropped = dropped + 1
  else
    local interval = tonumber(ARGV[6])
    if age <= tonumber(ARGV[7]) then
      interval = tonumber(ARGV[4])
    elseif age <= tonumber(ARGV[8]) then
      interval = tonumber(ARGV[5])
    end
    redis.call('ZADD', KEYS[1], now + interval, task)
    local member = ARGV[3] .. task
    if redis.call('ZSCORE', KEYS[6], member) then
      redis.call('HSETNX', KEYS[7], member, now)
    else
      redis.call('ZADD', KEYS[3], 'LT', now, member)
    end
    scheduled = scheduled + 1
  end
end
return {scheduled, dropped}
