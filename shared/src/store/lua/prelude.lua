-- Shared by every StoryForge store script; ARGV[1] is always the key namespace.
-- Times are Redis server time in milliseconds, so workers on machines with skewed clocks agree.
--
-- Work items of every kind move through the same sets (`pending`, `dispatched`, `leases`), whose
-- members are `<kind>:<id>`, and each item's hash is `ns:<member>`: `job:<id>` for a job's
-- generation, `delivery:<event id>` for a webhook delivery.
local ns = ARGV[1]
local function key(...) return ns .. ':' .. table.concat({...}, ':') end
local function record(member) return ns .. ':' .. member end
local function jobkey(id) return key('job', id) end
local function is_job(member) return string.sub(member, 1, 4) == 'job:' end
local function id_of(member) return string.match(member, '^[^:]+:(.*)$') end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Status indexes are kept for jobs only: they back `GET /v1/jobs?status=` and `/status`.
local function move_status(member, from, to)
  if not is_job(member) then return end
  local id = id_of(member)
  if from then redis.call('ZREM', key('idx', from), id) end
  redis.call('ZADD', key('idx', to), 0, id)
end
-- 'held' while the token owns a running item, 'canceled' if the client canceled it, else 'lost'.
local function lease_state(member, token)
  local f = redis.call('HMGET', record(member), 'status', 'token')
  if f[1] == 'canceled' then return 'canceled' end
  if f[1] ~= 'running' or f[2] ~= token then return 'lost' end
  return 'held'
end
-- A job's final event, for its webhook: a delivery work item made due now, in the same step as
-- the final state. Jobs of a batch send none (their batch does).
local function emit_job_event(id, status, now, ttl_ms)
  local jk = jobkey(id)
  local ok, spec = pcall(cjson.decode, redis.call('HGET', jk, 'spec') or '')
  if not ok or type(spec) ~= 'table' or type(spec.webhook) ~= 'table' then return end
  if spec.batch_id ~= nil and spec.batch_id ~= cjson.null then return end
  local event_type = 'job.' .. status
  local event_id = 'evt_' .. id .. '_' .. status
  local dk = key('delivery', event_id)
  redis.call('HSET', dk, 'spec', cjson.encode({event_id = event_id, type = event_type,
    job_id = id, created_at = now}), 'status', 'queued', 'attempts', 0, 'created_at', now,
    'due_at', now)
  redis.call('PEXPIRE', dk, ttl_ms)
  redis.call('HSET', jk, 'event', event_id)
  redis.call('ZADD', key('pending'), now, 'delivery:' .. event_id)
end
-- Final transition: index, lease and queue bookkeeping, the time-to-live, and a job's event.
local function finish(member, status, now, ttl_ms)
  local rk = record(member)
  local from = redis.call('HGET', rk, 'status')
  redis.call('HSET', rk, 'status', status, 'finished_at', now)
  redis.call('HDEL', rk, 'token', 'lease_until')
  move_status(member, from, status)
  redis.call('ZREM', key('leases'), member)
  redis.call('ZREM', key('pending'), member)
  redis.call('ZREM', key('dispatched'), member)
  redis.call('PEXPIRE', rk, ttl_ms)
  if is_job(member) then
    redis.call('ZADD', key('expiry'), now + ttl_ms, id_of(member))
    emit_job_event(id_of(member), status, now, ttl_ms)
  end
end
-- A delivery given up on without a worker's verdict (crashed workers, attempts exhausted) still
-- shows in the job's delivery log.
local function log_lost_delivery(member, attempts, message, now, ttl_ms)
  if is_job(member) then return end
  local spec = cjson.decode(redis.call('HGET', record(member), 'spec'))
  local log = key('deliveries', spec.job_id)
  redis.call('RPUSH', log, cjson.encode({event_id = spec.event_id, type = spec.type,
    attempt = attempts, error = message, outcome = 'dead', at_ms = now}))
  redis.call('PEXPIRE', log, ttl_ms)
end
-- Back to due: for retries, hand-backs and expired leases.
local function requeue(member, due)
  local rk = record(member)
  redis.call('HSET', rk, 'status', 'queued', 'due_at', due)
  if is_job(member) then redis.call('HSET', rk, 'stage', 'queued') end
  redis.call('HDEL', rk, 'token', 'lease_until')
  move_status(member, 'running', 'queued')
  redis.call('ZREM', key('leases'), member)
  redis.call('ZADD', key('pending'), due, member)
end
