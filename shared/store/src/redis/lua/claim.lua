-- ARGV: ns, member, token, worker, lease_ms, max_attempts, ttl_ms
-- Any ticket for a queued item that is due may claim it: duplicate tickets are harmless, since
-- only one claim can win, and a retry's backoff is kept because an item waiting for it is not
-- yet due. Returns {'granted', attempt, spec, last_error or '', ms it was due} | {'stale'} |
-- {'exhausted'}.
local member, token, worker = ARGV[2], ARGV[3], ARGV[4]
local lease_ms, max_attempts, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local rk = record(member)
local f = redis.call('HMGET', rk, 'status', 'due_at', 'attempts', 'spec', 'started_at', 'last_error')
if not f[1] then
  redis.call('ZREM', key('dispatched'), member)
  return {'stale'}
end
local now = now_ms()
if f[1] ~= 'queued' or tonumber(f[2] or 0) > now then return {'stale'} end
redis.call('ZREM', key('dispatched'), member)
local attempt = tonumber(f[3]) + 1
if attempt > max_attempts then
  local what = 'delivery'
  if is_job(member) then what = 'job' elseif is_run(member) then what = 'MLflow run' end
  local message = 'the ' .. what .. ' used all ' .. max_attempts .. ' attempts'
  redis.call('HSET', rk, 'error', cjson.encode({code = 'attempts_exhausted', message = message}))
  log_lost_delivery(member, max_attempts, message, now, ttl)
  if is_job(member) then redis.call('HSET', rk, 'stage', 'done') end
  finish(member, 'failed', now, ttl)
  return {'exhausted'}
end
redis.call('HSET', rk, 'status', 'running', 'attempts', attempt,
  'token', token, 'worker', worker, 'lease_until', now + lease_ms)
if is_job(member) then redis.call('HSET', rk, 'stage', 'generating') end
if not f[5] then redis.call('HSET', rk, 'started_at', now) end
move_status(member, 'queued', 'running')
redis.call('ZADD', key('leases'), now + lease_ms, member)
return {'granted', tostring(attempt), f[4], f[6] or '', tostring(now - tonumber(f[2] or now))}
