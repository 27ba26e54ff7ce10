-- KEYS: epoch lost metrics connected_at...
-- ARGV: known new_epoch now by loss_ttl losses_field
-- The state's epoch (state_epoch.py): made by the first serving process together with each
-- portal's connected_at; a serving process that finds it gone or changed has found a state loss.
-- Outcomes, by what the caller knew (ARGV[1]) and what Redis holds:
--   same     the epoch the caller knows: nothing happened (a portal new to Redis gets its
--            connected_at now, SET NX);
--   created  no epoch, and the caller knew none: a first start (or an upgrade from a version
--            without epochs): a new epoch; connected_at set where missing (SET NX);
--   adopted  the caller knew none (it just started): it takes the epoch in Redis (SET NX too);
--   lost     the caller knew an epoch and it is gone or changed. When it is gone, or was replaced
--            by a process that did not know of the loss (it just started, and kept whatever
--            connected_at survived), the caller starts the state over: a new epoch (so every
--            process's commits under the old ones are refused), connected_at = now for every
--            portal given (results from before are a silent baseline again), the loss recorded.
--            When the new epoch's maker recorded the loss itself, the caller adopts it.
-- KEYS[1] epoch hash, KEYS[2] loss record hash, KEYS[3] metrics hash, KEYS[4..] connected_at keys
-- ARGV[1] known epoch id ("" for none), ARGV[2] id for a new epoch, ARGV[3] now (ISO 8601, UTC),
-- ARGV[4] who asks, ARGV[5] loss record TTL (s), ARGV[6] metrics field counting losses
-- Returns {epoch id, outcome, connected_at of each portal in KEYS order}.
local known, now, by = ARGV[1], ARGV[3], ARGV[4]
local current = redis.call('HGET', KEYS[1], 'id')
local outcome

local function set_missing()
  for i = 4, #KEYS do redis.call('SET', KEYS[i], now, 'NX') end
end

local function start_over(reason)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'id', ARGV[2], 'since', now, 'by', by)
  for i = 4, #KEYS do redis.call('SET', KEYS[i], now) end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'at', now, 'reason', reason, 'epoch', ARGV[2], 'previous', known, 'by', by)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
  redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
  return ARGV[2]
end

if current and current == known then
  outcome = 'same'
  set_missing()
elseif not current and known == '' then
  outcome = 'created'
  redis.call('HSET', KEYS[1], 'id', ARGV[2], 'since', now, 'by', by)
  current = ARGV[2]
  set_missing()
elseif not current then
  outcome = 'lost'
  current = start_over('epoch ' .. known .. ' is gone from Redis')
elseif known == '' then
  outcome = 'adopted'
  set_missing()
elseif redis.call('HGET', KEYS[2], 'epoch') == current then
  outcome = 'lost'
  set_missing()
else
  outcome = 'lost'
  current = start_over('epoch ' .. known .. ' was replaced by ' .. current .. ', made without knowing of a loss')
end

local reply = {current, outcome}
for i = 4, #KEYS do reply[#reply + 1] = redis.call('GET', KEYS[i]) end
return reply
