-- KEYS: install installs removed portal_state...
-- ARGV: domain mark
-- Forget an app install (ONAPPUNINSTALL, portals/registry.py): the install and every key of the
-- portal as a whole now; its per-task state is left to a worker's upkeep (RemovedPortals), which
-- finds it through the mark. A reinstall starts afresh, with a new connected_at.
-- KEYS[1] install hash, KEYS[2] installed-portals set, KEYS[3] removed-portals hash,
-- KEYS[4..] the portal's whole-portal keys (portal_state_keys)
-- ARGV[1] domain, ARGV[2] removal mark ("at|cursor")
-- Returns 1 when the portal was installed, 0 otherwise (the mark is written either way).
redis.call('DEL', KEYS[1])
for i = 4, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return redis.call('SREM', KEYS[2], ARGV[1])
