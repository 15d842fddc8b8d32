-- ARGV: ns, limit, window. Returns the members (`<kind>:<id>`) handed out.
-- At most `window` items are outstanding (dispatched, not claimed), and never more than twice the
-- live workers' capacity (at least 16), so a ticket waits in apalis about one item's time at most.
-- Fairness: the lanes (`pending`, then one per batch) are taken from in turn, an equal share each
-- round, so work submitted after a 10,000-story batch is dispatched in the very next step.
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
local budget = math.min(window - redis.call('ZCARD', key('dispatched')), limit)
if budget <= 0 then return {} end

local active = {key('pending')}
for _, batch in ipairs(redis.call('ZRANGE', key('lanes'), 0, -1)) do
  local lane = key('pending', 'batch', batch)
  if redis.call('EXISTS', lane) == 1 then
    table.insert(active, lane)
  else
    redis.call('ZREM', key('lanes'), batch)
  end
end
local out = {}
while budget > 0 and #active > 0 do
  local share = math.max(1, math.floor(budget / #active))
  local still = {}
  for _, lane in ipairs(active) do
    if budget <= 0 then break end
    local want = math.min(share, budget)
    local members = redis.call('ZRANGEBYSCORE', lane, '-inf', now, 'LIMIT', 0, want)
    for _, member in ipairs(members) do
      redis.call('ZREM', lane, member)
      if redis.call('HGET', record(member), 'status') == 'queued' then
        redis.call('ZADD', key('dispatched'), now, member)
        table.insert(out, member)
        budget = budget - 1
      end
    end
    if #members == want then table.insert(still, lane) end
  end
  active = still
end
return out
