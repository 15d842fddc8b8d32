-- ARGV: ns, max_attempts (generation), max_attempts (webhook delivery), dispatch_timeout_ms,
-- ttl_ms, batch, max_attempts (MLflow run). Returns {expired leases requeued, items failed for exhausted attempts,
-- re-dispatched, pruned}.
local max_job, max_delivery = tonumber(ARGV[2]), tonumber(ARGV[3])
local dispatch_timeout, ttl, batch = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max_run = tonumber(ARGV[7])
local now = now_ms()
local report = {0, 0, 0, 0}

-- Once per deployment: the work sets of versions before webhooks held bare job ids; they are
-- renamed to `job:<id>` so that nothing queued, dispatched or running before an upgrade is lost.
if redis.call('SET', key('layout', 'work-items'), '1', 'NX') then
  for _, set in ipairs({'pending', 'dispatched', 'leases'}) do
    local entries = redis.call('ZRANGE', key(set), 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      local member, score = entries[i], entries[i + 1]
      if not string.find(member, ':', 1, true) then
        redis.call('ZREM', key(set), member)
        redis.call('ZADD', key(set), score, 'job:' .. member)
      end
    end
  end
end

-- 1. Leases whose worker stopped renewing them: due again, or failed when out of attempts.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', key('leases'), '-inf', now, 'LIMIT', 0, batch)) do
  local rk = record(member)
  local f = redis.call('HMGET', rk, 'status', 'attempts', 'worker')
  redis.call('ZREM', key('leases'), member)
  if f[1] == 'running' then
    local max_attempts = max_delivery
    if is_job(member) then max_attempts = max_job elseif is_run(member) then max_attempts = max_run end
    local lost = {code = 'worker_lost', message = 'worker ' .. tostring(f[3]) ..
      ' stopped renewing its lease during attempt ' .. f[2]}
    if tonumber(f[2]) >= max_attempts then
      lost.message = lost.message .. '; all ' .. max_attempts .. ' attempts used'
      redis.call('HSET', rk, 'error', cjson.encode(lost))
      if is_job(member) then redis.call('HSET', rk, 'stage', 'done') end
      log_lost_delivery(member, tonumber(f[2]), lost.message, now, ttl)
      finish(member, 'failed', now, ttl)
      report[2] = report[2] + 1
    else
      redis.call('HSET', rk, 'last_error', cjson.encode(lost))
      requeue(member, now)
      report[1] = report[1] + 1
    end
  end
end

-- 2. Dispatches nobody claimed (a lost ticket): due again.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', key('dispatched'), '-inf', now - dispatch_timeout, 'LIMIT', 0, batch)) do
  redis.call('ZREM', key('dispatched'), member)
  if redis.call('HGET', record(member), 'status') == 'queued' then
    make_due(member, now)
    report[3] = report[3] + 1
  end
end

-- 3. Expired records: pruned from the indexes.
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
