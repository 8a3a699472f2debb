-- Give a buyer's quota back in their home bucket after their hold's units, held in another
-- bucket, were released. Idempotent through the home record's state.
-- KEYS: 1 users, 2 holds   (the home bucket)
-- ARGV: 1 hold_id, 2 forget (1: drop the home record too)
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then return {'NOHOLD'} end
local f = {}
for part in string.gmatch(record, '([^|]+)') do f[#f + 1] = part end
if f[4] == 'R' or f[4] == 'T' then return {'ALREADY'} end
redis.call('HINCRBY', KEYS[1], f[1], -tonumber(f[2]))
f[4] = 'R'
if ARGV[2] == '1' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], table.concat(f, '|'))
end
return {'OK'}
