-- ARGV: ns, live_window_ms. Returns {queued, running, succeeded, failed, canceled, depth,
-- mlflow backlog, worker...}.
local out = {}
for _, s in ipairs({'queued', 'running', 'succeeded', 'failed', 'canceled'}) do
  table.insert(out, redis.call('ZCARD', key('idx', s)))
end
local depth = redis.call('ZCARD', key('pending')) + redis.call('ZCARD', key('dispatched'))
for _, batch in ipairs(redis.call('ZRANGE', key('lanes'), 0, -1)) do
  depth = depth + redis.call('ZCARD', key('pending', 'batch', batch))
end
table.insert(out, depth)
table.insert(out, tonumber(redis.call('GET', key('mlflow_backlog')) or '0'))
for _, w in ipairs(redis.call('ZRANGEBYSCORE', key('workers'), now_ms() - tonumber(ARGV[2]), '+inf')) do
  table.insert(out, w)
end
return out
