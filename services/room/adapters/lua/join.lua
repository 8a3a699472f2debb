-- A viewer joins a live room, atomically with the room's figures.
-- KEYS: live, seen (zset viewer -> last seen ms), visits (hash viewer -> "visit|joined ms"),
--       uv (HyperLogLog of viewers), peak (max concurrent)
-- ARGV: viewer, visit id, now ms
-- Reply: {"not_live", ""} | {"present", visit of the open visit} | {"joined", visit}
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_live', ''}
end
local viewer, visit, now = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('HGET', KEYS[3], viewer)
redis.call('ZADD', KEYS[2], now, viewer)
if current then
  local sep = string.find(current, '|', 1, true)
  return {'present', string.sub(current, 1, sep - 1)}
end
redis.call('HSET', KEYS[3], viewer, visit .. '|' .. now)
redis.call('PFADD', KEYS[4], viewer)
local count = redis.call('ZCARD', KEYS[2])
local peak = tonumber(redis.call('GET', KEYS[5]) or '0')
if count > peak then
  redis.call('SET', KEYS[5], count)
end
return {'joined', visit}
