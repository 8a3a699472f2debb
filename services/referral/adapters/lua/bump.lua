-- Add to a sharer's score on several leaderboards, once per change.
-- KEYS[1]: the change's marker; KEYS[2..]: the boards (all under one hash tag)
-- ARGV[1]: sharer; ARGV[2]: amount (negative for a refund); ARGV[3]: marker TTL, seconds
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return 0
end
for i = 2, #KEYS do
  redis.call('ZINCRBY', KEYS[i], ARGV[2], ARGV[1])
end
return 1
