-- Register a connection, unless the user already has max_conns live ones.
-- ARGV: user, conn, now_ms, grace_ms, max_conns
-- Returns -1 refused, 1 the user came online, 0 already online.
local user, conn = ARGV[1], ARGV[2]
local now, floor = tonumber(ARGV[3]), tonumber(ARGV[3]) - tonumber(ARGV[4])
local conns = 'chat:presence:conns:' .. user
if not redis.call('ZSCORE', conns, conn) then
  if redis.call('ZCOUNT', conns, floor, '+inf') >= tonumber(ARGV[5]) then
    return -1
  end
end
redis.call('ZADD', conns, now, conn)
redis.call('ZADD', 'chat:presence:index', now, conn .. ' ' .. user)
if redis.call('SET', 'chat:presence:online:' .. user, '1', 'NX') then
  raise_version(user, now)
  return 1
end
return 0
