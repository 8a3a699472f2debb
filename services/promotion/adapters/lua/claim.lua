-- Claim one coupon of a template for a buyer: the only place a coupon is handed out.
-- KEYS: 1 meta, 2 stock, 3 users, 4 claims   (one template: one hash tag, one slot)
-- ARGV: 1 claim_id, 2 user, 3 now_ms
-- A claim record is "user|epoch|claimed_ms". Idempotent on the claim id: a repeat gets DUP
-- and the record, whatever the stock is by then.
local meta = redis.call('HMGET', KEYS[1], 'start', 'end', 'limit', 'closed', 'epoch')
if not meta[1] then return {'NOTEMPLATE'} end
local existing = redis.call('HGET', KEYS[4], ARGV[1])
if existing then return {'DUP', existing} end
local now = tonumber(ARGV[3])
if meta[4] == '1' or now >= tonumber(meta[2]) then return {'CLOSED'} end
if now < tonumber(meta[1]) then return {'NOT_OPEN', meta[1]} end
local used = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
if used >= tonumber(meta[3]) then return {'LIMIT', meta[3]} end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock < 1 then return {'SOLD_OUT'} end
local left = redis.call('DECR', KEYS[2])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. '|' .. meta[5] .. '|' .. ARGV[3])
return {'OK', left, meta[5]}
