-- ARGV: ns, limit, window. Returns the members (`<kind>:<id>`) handed out.
-- At most `window` items are outstanding (dispatched, not claimed), and never more than twice the
-- live workers' capacity (at least 16), so a ticket waits in apalis about one item's time at most.
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
local members = redis.call('ZRANGEBYSCORE', key('pending'), '-inf', now, 'LIMIT', 0, math.min(room, limit))
local out = {}
for _, member in ipairs(members) do
  redis.call('ZREM', key('pending'), member)
  if redis.call('HGET', record(member), 'status') == 'queued' then
    redis.call('ZADD', key('dispatched'), now, member)
    table.insert(out, member)
  end
end
return out
