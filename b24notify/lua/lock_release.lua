-- KEYS: lock
-- ARGV: owner
-- Release a lock only by its holder (rest/oauth.py's refresh lock): a holder whose lock expired
-- and was taken by another process must not delete the other's.
-- KEYS[1] lock key, ARGV[1] the holder's random value
-- Returns 1 when released, 0 when the lock is gone or someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
