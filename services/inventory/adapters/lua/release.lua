-- Give a hold's units back to its bucket (or, once the sale has closed, report them for
-- return to the SKU). Idempotent: the record stays, marked R (units back in the sale) or T
-- (units returned to the SKU because the sale had closed), so a repeat changes nothing and
-- says which it was.
-- KEYS: 1 meta, 2 stock, 3 holds, 4 expiry, 5 users  (the units' bucket;
--       users is the home bucket's and must be in the same slot: the caller passes the
--       home bucket's users key only when home == units' bucket, else an unused key here)
-- ARGV: 1 hold_id, 2 now_ms, 3 only_if_expired (1: the sweeper; never releases sold units),
--       4 same_home (1 when the buyer's quota lives in this bucket),
--       5 restock channel, 6 restock message (channels are not keys: cluster-safe),
--       7 forget (1: a hold that never became durable; drop its record so that the hold id
--         can be tried again, instead of remembering it as released)
local record = redis.call('HGET', KEYS[3], ARGV[1])
if not record then return {'NOHOLD'} end
local f = {}
for part in string.gmatch(record, '([^|]+)') do f[#f + 1] = part end
if f[4] == 'R' or f[4] == 'T' then return {'ALREADY', tonumber(f[2]), f[4] == 'T' and 1 or 0} end
local now = tonumber(ARGV[2])
if ARGV[3] == '1' and (f[4] ~= 'H' or tonumber(f[3]) > now) then return {'NOT_EXPIRED'} end
local quantity = tonumber(f[2])
local meta = redis.call('HMGET', KEYS[1], 'end', 'closed')
local closed = (meta[2] == '1') or (meta[1] and now >= tonumber(meta[1]))
f[4] = closed and 'T' or 'R'
if ARGV[7] == '1' then
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[3], ARGV[1], table.concat(f, '|'))
end
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[5], f[1], -quantity) end
if closed then return {'OK', quantity, 1, f[1], f[6]} end
local left = redis.call('INCRBY', KEYS[2], quantity)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'OK', quantity, 0, f[1], f[6]}
