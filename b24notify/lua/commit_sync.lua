-- KEYS: token results delivery_due attempts epoch
-- ARGV: member claim_token now mode state delivery_prefix deliveries baseline_epoch results_ttl delivery_ttl
-- The outbox step: store a task's new result state and queue the deliveries its diff implies, in
-- one atomic step, only while the caller still holds the task's lease (fencing token) and the
-- state is still the one its baseline was read from (epoch). Either the state moves forward and
-- every notification it implies is queued, or nothing changes.
-- A delivery already known (same changes, recipient and channel: the notice key) is never queued twice: that is what makes
-- a retried or re-run job harmless.
-- Under another epoch (Redis lost its state since the job read its baseline, state_epoch.py) the
-- job's diff was made against a connected_at from before the loss: writing it could alert every
-- old result again, so nothing is written and the caller starts over under the new epoch.
-- Every key written here expires: the results hash ARGV[9] s after this commit (a quiet task's
-- state goes; Baseline.cutoff keeps its old results silent if it comes back), a new delivery
-- record ARGV[10] s after its creation (one whose portal went away is never sent; sent and dead
-- records get their own 30 days in the delivery job).
-- Delivery hashes are addressed from ARGV[6] (prefix .. id): fine on one Redis, not on a cluster.
-- KEYS[1] task token hash, KEYS[2] results hash, KEYS[3] delivery due zset, KEYS[4] task attempts hash,
-- KEYS[5] state epoch hash
-- ARGV[1] member, ARGV[2] token, ARGV[3] now, ARGV[4] mode: "store" or "drop",
-- ARGV[5] state JSON {result_id: stored_json}, ARGV[6] delivery key prefix,
-- ARGV[7] deliveries JSON [[delivery_id, channel, notice_json], ...], ARGV[8] the epoch the job's
-- baseline was read under ("" when there was none), ARGV[9] results TTL (s), ARGV[10] new
-- delivery record TTL (s)
-- Returns the number of deliveries queued, -1 when the lease was stale, -2 when the epoch changed
-- (nothing written in either case).
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return -1
end
if (redis.call('HGET', KEYS[5], 'id') or '') ~= ARGV[8] then
  return -2
end
redis.call('DEL', KEYS[2])
if ARGV[4] == 'store' then
  local state = cjson.decode(ARGV[5])
  redis.call('HSET', KEYS[2], '_known', ARGV[3])
  for id, stored in pairs(state) do
    redis.call('HSET', KEYS[2], id, stored)
  end
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[9]))
end
local queued = 0
for _, d in ipairs(cjson.decode(ARGV[7])) do
  local key = ARGV[6] .. d[1]
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'notice', d[3], 'channel', d[2], 'status', 'pending',
      'attempts', 0, 'created_at', ARGV[3])
    redis.call('EXPIRE', key, tonumber(ARGV[10]))
    redis.call('ZADD', KEYS[3], 'NX', ARGV[3], d[1])
    queued = queued + 1
  end
end
redis.call('HDEL', KEYS[4], ARGV[1])
return queued
