-- Take units for a spilled hold from another bucket of the sale (its home bucket is empty).
-- KEYS: 1 meta, 2 stock, 3 holds, 4 expiry   (the other bucket)
-- ARGV: 1 hold_id, 2 user, 3 quantity, 4 expiry_ms, 5 this bucket, 6 home bucket, 7 now_ms,
--       8 the home bucket's epoch: a bucket of another epoch is mid-rebuild (STALE)
local meta = redis.call('HMGET', KEYS[1], 'end', 'closed', 'epoch')
if not meta[1] then return {'NOSALE'} end
if meta[3] ~= ARGV[8] then return {'STALE'} end
if meta[2] == '1' or tonumber(ARGV[7]) >= tonumber(meta[1]) then return {'CLOSED'} end
local existing = redis.call('HGET', KEYS[3], ARGV[1])
if existing then return {'DUP', existing} end
local quantity = tonumber(ARGV[3])
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock < quantity then return {'EMPTY', stock} end
local left = redis.call('DECRBY', KEYS[2], quantity)
redis.call('HSET', KEYS[3], ARGV[1],
  table.concat({ARGV[2], quantity, ARGV[4], 'H', ARGV[5], ARGV[6], meta[3]}, '|'))
redis.call('ZADD', KEYS[4], tonumber(ARGV[4]), ARGV[1])
return {'OK', left, meta[3]}
