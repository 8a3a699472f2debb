-- Close a bucket of a sale: no more reservations; its unsold units leave the sale.
-- Idempotent: a repeat returns the units the first close took out.
-- KEYS: 1 meta, 2 stock
if redis.call('HGET', KEYS[1], 'closed') == '1' then
  return tonumber(redis.call('HGET', KEYS[1], 'closed_left') or '0')
end
local left = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('HSET', KEYS[1], 'closed', '1', 'closed_left', left)
redis.call('SET', KEYS[2], 0)
return left
