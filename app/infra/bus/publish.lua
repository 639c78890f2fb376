-- Publishes each (channel, data, own) triple of ARGV[2..] only where a subscriber other
-- than the calling instance listens. `own` is 1 when the caller's own subscription to
-- the channel is confirmed; it counts only while the caller's subscription connection is
-- alive, which its home channel (ARGV[1], followed by that connection alone) tells.
-- Counting and publishing in one script is atomic: a subscriber is either counted or
-- subscribes afterwards, exactly as with a plain PUBLISH. Returns how many went out.
local alive = redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2] > 0
local sent = 0
for i = 2, #ARGV, 3 do
  local channel = ARGV[i]
  local own = 0
  if alive then
    own = tonumber(ARGV[i + 2])
  end
  if redis.call('PUBSUB', 'NUMSUB', channel)[2] - own > 0 then
    redis.call('PUBLISH', channel, ARGV[i + 1])
    sent = sent + 1
  end
end
return sent
