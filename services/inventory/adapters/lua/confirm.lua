-- A hold was paid: its units are sold. Idempotent.
-- KEYS: 1 holds, 2 expiry   (the bucket holding the units)
-- ARGV: 1 hold_id
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return {'NOHOLD'} end
local f = {}
for part in string.gmatch(record, '([^|]+)') do f[#f + 1] = part end
if f[4] == 'S' then return {'ALREADY'} end
if f[4] == 'R' or f[4] == 'T' then return {'RELEASED'} end
f[4] = 'S'
redis.call('HSET', KEYS[1], ARGV[1], table.concat(f, '|'))
redis.call('ZREM', KEYS[2], ARGV[1])
return {'OK'}
