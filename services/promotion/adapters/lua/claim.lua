-- Claim one coupon of a template for a buyer: the only place a coupon is handed out.
-- KEYS: 1 meta, 2 stock, 3 users, 4 claims, 5 the buyer's attempts, 6 the address's attempts
--       (one template: one hash tag, one slot)
-- ARGV: 1 claim_id, 2 user, 3 now_ms,
--       4 attempts a buyer may make, 5 in this many ms,
--       6 attempts an address may make (0: the address is exempt), 7 in this many ms
-- A claim record is "user|epoch|claimed_ms". Idempotent on the claim id: a repeat gets DUP
-- and the record, whatever the stock is by then.
-- The claim rate limits are counted here, in the same round trip as the decision: a moving
-- window of accepted attempts per buyer and per address (a list of their times, newest
-- first, at most `limit` long). An attempt either limit refuses is counted by neither. They
-- are counted before anything else, so that taps on a drop Redis does not know (each of which
-- makes the service look in its store) are limited too.
local now = tonumber(ARGV[3])

local function wait_ms(key, limit, window)
  if limit <= 0 then return 0 end
  local oldest = redis.call('LINDEX', key, limit - 1)
  if oldest and tonumber(oldest) > now - window then
    return math.min(window, tonumber(oldest) + window - now)
  end
  return 0
end

local function count(key, limit, window)
  if limit <= 0 then return end
  redis.call('LPUSH', key, now)
  redis.call('LTRIM', key, 0, limit - 1)
  redis.call('PEXPIRE', key, window)
end

local user_limit, user_window = tonumber(ARGV[4]), tonumber(ARGV[5])
local address_limit, address_window = tonumber(ARGV[6]), tonumber(ARGV[7])
local wait = wait_ms(KEYS[5], user_limit, user_window)
if wait > 0 then return {'RATE_LIMITED', 'user', wait} end
wait = wait_ms(KEYS[6], address_limit, address_window)
if wait > 0 then return {'RATE_LIMITED', 'address', wait} end
count(KEYS[5], user_limit, user_window)
count(KEYS[6], address_limit, address_window)

local meta = redis.call('HMGET', KEYS[1], 'start', 'end', 'limit', 'closed', 'epoch')
if not meta[1] then return {'NOTEMPLATE'} end

local existing = redis.call('HGET', KEYS[4], ARGV[1])
if existing then return {'DUP', existing} end
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
