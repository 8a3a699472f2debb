-- One moving-window rate limit on one key: the attempt is counted if the window has room.
-- KEYS: 1 the accepted attempts of one user or one address (their times, newest first,
--         at most `limit` of them)
-- ARGV: 1 now_ms, 2 attempts allowed, 3 in this many ms
-- Returns 0 when the attempt is accepted and counted; otherwise the ms until the oldest
-- accepted attempt leaves the window (at most the window: the times come from the callers'
-- clocks, so a later caller's can be a little older), and the attempt is not counted.
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local oldest = redis.call('LINDEX', KEYS[1], limit - 1)
if oldest and tonumber(oldest) > now - window then
  return math.min(window, tonumber(oldest) + window - now)
end
redis.call('LPUSH', KEYS[1], now)
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('PEXPIRE', KEYS[1], window)
return 0
