-- ARGV: ns, limit, window. Returns the ids handed out.
-- At most `window` jobs are outstanding (dispatched, not claimed), and never more than twice the
-- live workers' capacity (at least 16), so a ticket waits in apalis about one job's time at most.
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local capacity = 0
local live = redis.call('ZRANGEBYSCORE', key('workers'), now - 30000, '+inf')
if #live > 0 then
  for _, c in ipairs(redis.call('HMGET', key('capacity'), unpack(live))) do
    capacity = capacity + (tonumber(c) or 0)
  end
end
window = math.min(window, math.max(16, 2 * capacity))
local room = window - redis.call('ZCARD', key('dispatched'))
if room <= 0 then return {} end
local ids = redis.call('ZRANGEBYSCORE', key('pending'), '-inf', now, 'LIMIT', 0, math.min(room, limit))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', key('pending'), id)
  if redis.call('HGET', jobkey(id), 'status') == 'queued' then
    redis.call('ZADD', key('dispatched'), now, id)
    table.insert(out, id)
  end
end
return out
