-- Heartbeat of one instance: vouch for each of its live connections.
-- ARGV: now_ms, then conn, user pairs.
-- An entry that is missing (Redis lost its data, or a sweep removed it while this
-- instance was stalled) is added back, since the instance holds the connection open;
-- returns the users that thereby came (back) online.
local now = tonumber(ARGV[1])
local came = {}
for i = 2, #ARGV, 2 do
  local conn, user = ARGV[i], ARGV[i + 1]
  redis.call('ZADD', 'chat:presence:conns:' .. user, now, conn)
  redis.call('ZADD', 'chat:presence:index', now, conn .. ' ' .. user)
  if redis.call('SET', 'chat:presence:online:' .. user, '1', 'NX') then
    raise_version(user, now)
    table.insert(came, user)
  end
end
return came
