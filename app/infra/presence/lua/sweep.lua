-- Remove connections whose instance stopped vouching for them (crashed or cut off).
-- ARGV: now_ms, grace_ms, limit
-- Returns the number of connections removed, then user, last_seen_ms pairs for the users
-- this sweep took offline. Atomic, so when
-- every instance sweeps at once each dead connection is removed, and reported, once.
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
-- A registry nobody swept for longer than the grace was left unattended: Redis was out
-- of every instance's reach, or no instance ran. Its entries lapsed for that reason, not
-- because their instances died, and sweeping them now would take every user of every
-- other instance offline until that instance's next refresh. So the sweep holds off for
-- one grace from here: every live instance vouches again within it (each one every half
-- heartbeat), and what is still lapsed after it is dead.
local previous = tonumber(redis.call('GET', 'chat:presence:swept_at'))
redis.call('SET', 'chat:presence:swept_at', now)
if previous and now - previous > grace then
  redis.call('SET', 'chat:presence:sweep_from', now + grace)
end
if now < (tonumber(redis.call('GET', 'chat:presence:sweep_from')) or 0) then
  return {0}
end
local floor = now - grace
local dead = redis.call('ZRANGEBYSCORE', 'chat:presence:index', '-inf', '(' .. floor,
  'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local last = {}
for i = 1, #dead, 2 do
  local member, score = dead[i], tonumber(dead[i + 1])
  local cut = string.find(member, ' ', 1, true)
  local conn, user = string.sub(member, 1, cut - 1), string.sub(member, cut + 1)
  redis.call('ZREM', 'chat:presence:index', member)
  redis.call('ZREM', 'chat:presence:conns:' .. user, conn)
  if not last[user] or score > last[user] then
    last[user] = score
  end
end
local result = {#dead / 2}
for user, score in pairs(last) do
  if redis.call('ZCOUNT', 'chat:presence:conns:' .. user, floor, '+inf') == 0 then
    -- A connection of the user that ended after these last vouched (disconnect.lua).
    local ended = tonumber(redis.call('GET', 'chat:presence:ended:' .. user))
    redis.call('DEL', 'chat:presence:ended:' .. user)
    if ended and ended > score then
      score = ended
    end
    if redis.call('DEL', 'chat:presence:online:' .. user) == 1 then
      raise_version(user, now)
      table.insert(result, user)
      table.insert(result, tostring(score))
    end
  end
end
return result
