-- Undo a join whose ViewerJoined could not be made durable (only that visit).
-- KEYS: seen, visits   ARGV: viewer, visit id
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current and string.sub(current, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
