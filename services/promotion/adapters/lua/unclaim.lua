-- Give back a claim that never became durable: the coupon returns to the stock and the
-- buyer's count drops. Only a claim of the given epoch: after a rebuild, the rebuilt state
-- already leaves it out.
-- KEYS: 1 stock, 2 users, 3 claims
-- ARGV: 1 claim_id, 2 epoch
local record = redis.call('HGET', KEYS[3], ARGV[1])
if not record then return 0 end
local user, epoch = string.match(record, '^(.*)|(%d+)|%d+$')
if epoch ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[1])
if tonumber(redis.call('HINCRBY', KEYS[2], user, -1)) <= 0 then
  redis.call('HDEL', KEYS[2], user)
end
return 1
