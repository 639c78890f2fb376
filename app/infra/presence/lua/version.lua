-- Prepended to every script that makes a user come online or go offline.
-- A user's presence version: raised by every such transition, so that watchers on any
-- instance can drop a report older than one they already have. It starts from the
-- caller's clock (microseconds) and always passes the previous one, so it keeps rising
-- even after a Redis restart that lost the key. Kept for a day, not for ever (one key per
-- user who was ever online): a version made from the clock a day later is past it anyway.
local function raise_version(user, now_ms)
  local key = 'chat:presence:version:' .. user
  local version = now_ms * 1000
  local before = tonumber(redis.call('GET', key))
  if before and before >= version then
    version = before + 1
  end
  redis.call('SET', key, string.format('%.0f', version), 'PX', 86400000)
end
