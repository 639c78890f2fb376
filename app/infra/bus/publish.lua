-- Publishes each (channel, data, own) triple of ARGV only where a subscriber other than
-- the calling instance listens: `own` is 1 when the caller's own subscription to the
-- channel is confirmed, so the count it adds is taken off. Run as one script, the count
-- and the publish are atomic: a subscriber either is counted or subscribes afterwards,
-- exactly as with a plain PUBLISH. Returns how many were published.
local sent = 0
for i = 1, #ARGV, 3 do
  local channel = ARGV[i]
  local others = redis.call('PUBSUB', 'NUMSUB', channel)[2] - tonumber(ARGV[i + 2])
  if others > 0 then
    redis.call('PUBLISH', channel, ARGV[i + 1])
    sent = sent + 1
  end
end
return sent
