-- Settle a pending (spilled) hold in its home bucket: point it at the bucket that gave the
-- units, or, when none could, give the buyer's quota back and forget the hold.
-- KEYS: 1 users, 2 holds, 3 expiry   (the home bucket)
-- ARGV: 1 hold_id, 2 stock bucket or -1
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then return {'NOHOLD'} end
local f = {}
for part in string.gmatch(record, '([^|]+)') do f[#f + 1] = part end
if f[4] ~= 'P' then return {'SETTLED', record} end
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[2] == '-1' then
  redis.call('HINCRBY', KEYS[1], f[1], -tonumber(f[2]))
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {'FORGOTTEN'}
end
f[4] = 'H'
f[5] = ARGV[2]
redis.call('HSET', KEYS[2], ARGV[1], table.concat(f, '|'))
return {'OK'}
