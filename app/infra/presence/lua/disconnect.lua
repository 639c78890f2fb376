-- Remove a connection. ARGV: user, conn, now_ms, grace_ms
-- Returns 1 when this removal took the user offline (exactly one caller ever sees it).
-- Otherwise the user keeps connections that still count as live, but some may belong to
-- an instance that already died: remember when this one ended, so that the sweep which
-- later removes those does not date the user's last_seen back to before it.
local user, conn = ARGV[1], ARGV[2]
local now, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local conns = 'chat:presence:conns:' .. user
local ended = 'chat:presence:ended:' .. user
redis.call('ZREM', conns, conn)
redis.call('ZREM', 'chat:presence:index', conn .. ' ' .. user)
if redis.call('ZCOUNT', conns, now - grace, '+inf') == 0 then
  redis.call('DEL', ended)
  if redis.call('DEL', 'chat:presence:online:' .. user) == 1 then
    raise_version(user, now)
    return 1
  end
  return 0
end
local before = tonumber(redis.call('GET', ended))
if not before or now > before then
  -- Only needed until what still counts as live has lapsed and been swept.
  redis.call('SET', ended, now, 'PX', 2 * grace)
end
return 0
