-- KEYS: install
-- ARGV: old_refresh_token access_token refresh_token expires
-- Compare-and-set of an install's tokens (rest/oauth.py): the new pair is written only over the
-- refresh token it was made from. Refresh tokens are single-use (docs/protocol.md §8): a pair
-- made from a token someone else already replaced (a reinstall) must not overwrite theirs.
-- KEYS[1] install hash
-- ARGV[1] refresh token the refresh started from, ARGV[2] new access token, ARGV[3] new refresh
-- token, ARGV[4] new expiry (unix s)
-- Returns 1 when written, 0 when the stored refresh token is another.
if redis.call('HGET', KEYS[1], 'refresh_token') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'access_token', ARGV[2], 'refresh_token', ARGV[3], 'expires', ARGV[4])
return 1
