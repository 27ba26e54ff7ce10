-- The outbox step: store a task's new result state and queue the deliveries its diff implies, in
-- one atomic step, only while the caller still holds the task's lease (fencing token). Either the
-- state moves forward and every notification it implies is queued, or nothing changes.
-- A delivery already known (same alert key and channel) is never queued twice: that is what makes
-- a retried or re-run job harmless.
-- Delivery hashes are addressed from ARGV[6] (prefix .. id): fine on one Redis, not on a cluster.
-- KEYS[1] task token hash, KEYS[2] results hash, KEYS[3] delivery due zset, KEYS[4] task attempts hash
-- ARGV[1] member, ARGV[2] token, ARGV[3] now, ARGV[4] mode: "store" or "drop",
-- ARGV[5] state JSON {result_id: stored_json}, ARGV[6] delivery key prefix,
-- ARGV[7] deliveries JSON [[delivery_id, channel, alert_json], ...]
-- Returns the number of deliveries queued, or -1 when the lease was stale (nothing written).
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return -1
end
redis.call('DEL', KEYS[2])
if ARGV[4] == 'store' then
  local state = cjson.decode(ARGV[5])
  redis.call('HSET', KEYS[2], '_known', ARGV[3])
  for id, stored in pairs(state) do
    redis.call('HSET', KEYS[2], id, stored)
  end
end
local queued = 0
for _, d in ipairs(cjson.decode(ARGV[7])) do
  local key = ARGV[6] .. d[1]
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'alert', d[3], 'channel', d[2], 'status', 'pending',
      'attempts', 0, 'created_at', ARGV[3])
    redis.call('ZADD', KEYS[3], 'NX', ARGV[3], d[1])
    queued = queued + 1
  end
end
redis.call('HDEL', KEYS[4], ARGV[1])
return queued
