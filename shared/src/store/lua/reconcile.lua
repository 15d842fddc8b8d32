-- ARGV: ns, max_attempts, dispatch_timeout_ms, ttl_ms, batch.
-- Returns {expired leases requeued, jobs failed for exhausted attempts, re-dispatched, pruned}.
local max_attempts, dispatch_timeout = tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, batch = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local report = {0, 0, 0, 0}

for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('leases'), '-inf', now, 'LIMIT', 0, batch)) do
  local jk = jobkey(id)
  local f = redis.call('HMGET', jk, 'status', 'attempts', 'worker')
  redis.call('ZREM', key('leases'), id)
  if f[1] == 'running' then
    local lost = {code = 'worker_lost', message = 'worker ' .. tostring(f[3]) ..
      ' stopped renewing its lease during attempt ' .. f[2]}
    if tonumber(f[2]) >= max_attempts then
      lost.message = lost.message .. '; all ' .. max_attempts .. ' attempts used'
      redis.call('HSET', jk, 'error', cjson.encode(lost), 'stage', 'done')
      finish(id, 'failed', now, ttl)
      report[2] = report[2] + 1
    else
      redis.call('HSET', jk, 'last_error', cjson.encode(lost))
      requeue(id, now)
      report[1] = report[1] + 1
    end
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('dispatched'), '-inf', now - dispatch_timeout, 'LIMIT', 0, batch)) do
  redis.call('ZREM', key('dispatched'), id)
  if redis.call('HGET', jobkey(id), 'status') == 'queued' then
    redis.call('ZADD', key('pending'), now, id)
    report[3] = report[3] + 1
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', key('expiry'), '-inf', now, 'LIMIT', 0, batch)) do
  redis.call('ZREM', key('expiry'), id)
  if redis.call('EXISTS', jobkey(id)) == 0 then
    redis.call('ZREM', key('idx', 'all'), id)
    for _, s in ipairs({'queued', 'running', 'succeeded', 'failed', 'canceled'}) do
      redis.call('ZREM', key('idx', s), id)
    end
    report[4] = report[4] + 1
  end
end

for _, w in ipairs(redis.call('ZRANGEBYSCORE', key('workers'), '-inf', now - 3600000)) do
  redis.call('ZREM', key('workers'), w)
  redis.call('HDEL', key('capacity'), w)
  redis.call('HDEL', key('providers'), w)
end
return report
