-- ARGV: ns, id, token, worker, lease_ms, max_attempts, ttl_ms
-- Any ticket for a queued job that is due may claim it: duplicate tickets are harmless, since only
-- one claim can win, and a retry's backoff is kept because a job waiting for it is not yet due.
-- Returns {'granted', attempt, spec, last_error or ''} | {'stale'} | {'exhausted'}.
local id, token, worker = ARGV[2], ARGV[3], ARGV[4]
local lease_ms, max_attempts, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local jk = jobkey(id)
local f = redis.call('HMGET', jk, 'status', 'due_at', 'attempts', 'spec', 'started_at', 'last_error')
if not f[1] then
  redis.call('ZREM', key('dispatched'), id)
  return {'stale'}
end
local now = now_ms()
if f[1] ~= 'queued' or tonumber(f[2] or 0) > now then return {'stale'} end
redis.call('ZREM', key('dispatched'), id)
local attempt = tonumber(f[3]) + 1
if attempt > max_attempts then
  redis.call('HSET', jk, 'stage', 'done', 'error', cjson.encode({code = 'attempts_exhausted',
    message = 'the job used all ' .. max_attempts .. ' attempts'}))
  finish(id, 'failed', now, ttl)
  return {'exhausted'}
end
redis.call('HSET', jk, 'status', 'running', 'stage', 'generating', 'attempts', attempt,
  'token', token, 'worker', worker, 'lease_until', now + lease_ms)
if not f[5] then redis.call('HSET', jk, 'started_at', now) end
move_status(id, 'queued', 'running')
redis.call('ZADD', key('leases'), now + lease_ms, id)
return {'granted', tostring(attempt), f[4], f[6] or ''}
