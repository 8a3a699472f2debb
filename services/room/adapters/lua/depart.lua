-- Viewers leave: one named viewer, or those last seen before a cutoff. Each visit closes
-- once (whichever replica gets here first), and its watch time is added to the room's total.
-- KEYS: seen, visits, watch (total watched ms)
-- ARGV: mode ("one" | "seen_before"), viewer or cutoff ms, limit,
--       until ("last_seen" or a time in ms: when the watching ended)
-- Reply: flat list viewer, visit, joined ms, until ms for each visit closed
local rows
if ARGV[1] == 'one' then
  local seen = redis.call('ZSCORE', KEYS[1], ARGV[2])
  rows = seen and {ARGV[2], seen} or {}
else
  rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'WITHSCORES',
                    'LIMIT', 0, tonumber(ARGV[3]))
end
local out = {}
for i = 1, #rows, 2 do
  local viewer, seen = rows[i], tonumber(rows[i + 1])
  local current = redis.call('HGET', KEYS[2], viewer)
  redis.call('ZREM', KEYS[1], viewer)
  redis.call('HDEL', KEYS[2], viewer)
  if current then
    local sep = string.find(current, '|', 1, true)
    local joined = tonumber(string.sub(current, sep + 1))
    local ending = seen
    if ARGV[4] ~= 'last_seen' then
      ending = tonumber(ARGV[4])
    end
    if ending < joined then
      ending = joined
    end
    redis.call('INCRBY', KEYS[3], ending - joined)
    table.insert(out, viewer)
    table.insert(out, string.sub(current, 1, sep - 1))
    table.insert(out, joined)
    table.insert(out, ending)
  end
end
return out
