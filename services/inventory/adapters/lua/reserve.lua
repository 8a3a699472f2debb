-- Reserve units of one flash-sale bucket for a buyer: the only place a unit is handed out.
-- KEYS: 1 meta, 2 stock, 3 users, 4 holds, 5 expiry   (one bucket: one hash tag, one slot)
-- ARGV: 1 hold_id, 2 user, 3 quantity, 4 now_ms, 5 this bucket, 6 bucket count
-- A hold record is "user|quantity|expiry_ms|state|stock_bucket|home_bucket|epoch" with
-- state H (held), S (sold), R (released), P (pending: quota taken here, stock sought in
-- another bucket). The buyer's count against the per-user limit lives in their home bucket.
local meta = redis.call('HMGET', KEYS[1], 'start', 'end', 'limit', 'ttl', 'closed', 'epoch')
if not meta[1] then return {'NOSALE'} end
local hold_id, user = ARGV[1], ARGV[2]
local quantity, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local existing = redis.call('HGET', KEYS[4], hold_id)
if existing then return {'DUP', existing, redis.call('GET', KEYS[2]) or '0'} end
if meta[5] == '1' or now >= tonumber(meta[2]) then return {'CLOSED'} end
if now < tonumber(meta[1]) then return {'NOT_OPEN', meta[1]} end
local limit = tonumber(meta[3])
if quantity < 1 or quantity > limit then return {'BAD_QTY', limit} end
local used = tonumber(redis.call('HGET', KEYS[3], user) or '0')
if used + quantity > limit then return {'LIMIT', used, limit} end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local expiry = now + tonumber(meta[4])
local bucket = ARGV[5]
if stock >= quantity then
  local left = redis.call('DECRBY', KEYS[2], quantity)
  redis.call('HINCRBY', KEYS[3], user, quantity)
  redis.call('HSET', KEYS[4], hold_id,
    table.concat({user, quantity, expiry, 'H', bucket, bucket, meta[6]}, '|'))
  redis.call('ZADD', KEYS[5], expiry, hold_id)
  return {'OK', expiry, left, meta[6]}
end
if tonumber(ARGV[6]) <= 1 then return {'SOLD_OUT', stock} end
redis.call('HINCRBY', KEYS[3], user, quantity)
redis.call('HSET', KEYS[4], hold_id,
  table.concat({user, quantity, expiry, 'P', '-1', bucket, meta[6]}, '|'))
redis.call('ZADD', KEYS[5], expiry, hold_id)
return {'SPILL', expiry, stock, meta[6]}
