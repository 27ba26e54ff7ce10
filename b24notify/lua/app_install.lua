-- KEYS: install installs halted connected_at
-- ARGV: domain member_id connected_stamp fields...
-- Store an app install (portals/registry.py): the one write of an install, for the web after a
-- verified ONAPPINSTALL and for every tool or test that records one.
-- Refuses (returns 0, writes nothing) when another member_id is installed under this domain:
-- a domain is one portal; its owner uninstalls first.
-- A reinstall replaces the whole record and clears a halt (reinstalling is the operator's fix for
-- an install the portal refused); connected_at is kept from an earlier install (SET NX): results
-- pinned before the first install stay a silent baseline. An uninstall deleted it: a reinstall
-- after an uninstall starts from now.
-- KEYS[1] install hash, KEYS[2] installed-portals set, KEYS[3] halt key, KEYS[4] connected_at
-- ARGV[1] domain, ARGV[2] member_id, ARGV[3] connected_at when missing (ISO 8601),
-- ARGV[4..] the install's field, value pairs
local current = redis.call('HGET', KEYS[1], 'member_id')
if current and current ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[4], ARGV[3], 'NX')
return 1
