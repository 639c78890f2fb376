-- Heartbeat of one instance: push the deadline of each of its live connections forward.
-- ARGV: now_ms, reregister (0|1), then conn, user pairs.
-- With reregister (after Redis lost its data) missing entries are added back and users
-- are marked online again; returns the users that came (back) online.
local now, add = tonumber(ARGV[1]), ARGV[2] == '1'
local came = {}
for i = 3, #ARGV, 2 do
  local conn, user = ARGV[i], ARGV[i + 1]
  local conns = 'chat:presence:conns:' .. user
  if add then
    redis.call('ZADD', conns, now, conn)
    redis.call('ZADD', 'chat:presence:index', now, conn .. ' ' .. user)
    if redis.call('SET', 'chat:presence:online:' .. user, '1', 'NX') then
      table.insert(came, user)
    end
  else
    -- XX: never resurrect a connection that was removed meanwhile.
    redis.call('ZADD', conns, 'XX', now, conn)
    redis.call('ZADD', 'chat:presence:index', 'XX', now, conn .. ' ' .. user)
  end
end
return came
