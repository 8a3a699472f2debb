-- A present viewer is seen again. KEYS: seen, visits   ARGV: viewer, now ms
-- Reply: 1, or 0 if the viewer is not in the room (timed out, never joined, room ended).
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
