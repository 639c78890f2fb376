-- Remove a connection. ARGV: user, conn, now_ms, grace_ms
-- Returns 1 when this removal took the user offline (exactly one caller ever sees it).
local user, conn = ARGV[1], ARGV[2]
local floor = tonumber(ARGV[3]) - tonumber(ARGV[4])
local conns = 'chat:presence:conns:' .. user
redis.call('ZREM', conns, conn)
redis.call('ZREM', 'chat:presence:index', conn .. ' ' .. user)
if redis.call('ZCOUNT', conns, floor, '+inf') == 0 then
  return redis.call('DEL', 'chat:presence:online:' .. user)
end
return 0
