-- Shared by every StoryForge store script; ARGV[1] is always the key namespace.
-- Times are Redis server time in milliseconds, so workers on machines with skewed clocks agree.
--
-- Work items of every kind move through the same sets (the due *lanes*, `dispatched`, `leases`),
-- whose members are `<kind>:<id>`, and each item's hash is `ns:<member>`: `job:<id>` for a job's
-- generation, `delivery:<event id>` for a webhook delivery, `run:job-<id>` or `run:batch-<id>` for
-- the MLflow run of a finished job or batch. Due items wait in a lane: a batch's
-- jobs in the batch's own lane (`pending:batch:<id>`, listed in `lanes`), everything else in
-- `pending`; the dispatcher takes from the lanes in turn, so a big batch starves nobody.
local ns = ARGV[1]
local function key(...) return ns .. ':' .. table.concat({...}, ':') end
local function record(member) return ns .. ':' .. member end
local function jobkey(id) return key('job', id) end
local function is_job(member) return string.sub(member, 1, 4) == 'job:' end
local function is_run(member) return string.sub(member, 1, 4) == 'run:' end
local function is_delivery(member) return string.sub(member, 1, 9) == 'delivery:' end
local function id_of(member) return string.match(member, '^[^:]+:(.*)$') end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Change notifications for live progress (`GET …/events`): a hint to read again, nothing more.
local function announce(subject, id)
  redis.call('PUBLISH', key('changes', subject, id), '1')
end

-- The batch a work item belongs to, if any.
local function batch_of(member)
  if not is_job(member) then return nil end
  return redis.call('HGET', record(member), 'batch')
end
local function lane_of(member)
  local batch = batch_of(member)
  if batch then return key('pending', 'batch', batch) end
  return key('pending')
end
local function make_due(member, due)
  local batch = batch_of(member)
  if batch then
    redis.call('ZADD', key('pending', 'batch', batch), due, member)
    redis.call('ZADD', key('lanes'), 0, batch)
  else
    redis.call('ZADD', key('pending'), due, member)
  end
end

-- An event for a webhook: a delivery work item, due now, written in the caller's step.
-- `subject` is 'job' or 'batch'; the subject's hash remembers the event's id.
local function emit_event(subject, id, event_type, suffix, now, ttl_ms)
  local event_id = 'evt_' .. id .. '_' .. suffix
  local dk = key('delivery', event_id)
  redis.call('HSET', dk, 'spec', cjson.encode({event_id = event_id, type = event_type,
    subject = subject, subject_id = id, created_at = now}), 'status', 'queued', 'attempts', 0,
    'created_at', now, 'due_at', now)
  redis.call('PEXPIRE', dk, ttl_ms)
  redis.call('HSET', key(subject, id), 'event', event_id)
  redis.call('ZADD', key('pending'), now, 'delivery:' .. event_id)
end
-- A job's or batch's spec as a table (empty when unreadable).
local function decoded(spec_json)
  local ok, spec = pcall(cjson.decode, spec_json or '')
  if ok and type(spec) == 'table' then return spec end
  return {}
end

-- A finished job's or batch's MLflow run: a run work item, due now, written in the caller's step
-- (once: a subject that has one keeps it). `mlflow_backlog` counts the items not yet finished.
local function emit_run(subject, id, now, ttl_ms)
  local member = 'run:' .. subject .. '-' .. id
  local rk = record(member)
  if redis.call('EXISTS', rk) == 1 then return end
  redis.call('HSET', rk, 'spec', '', 'status', 'queued', 'attempts', 0, 'created_at', now, 'due_at', now)
  redis.call('PEXPIRE', rk, ttl_ms)
  redis.call('ZADD', key('pending'), now, member)
  redis.call('INCR', key('mlflow_backlog'))
end

-- A batch whose jobs have all finished: `completed` (unless canceled), its lane retired, and
-- its `batch.completed` event.
local function settle_batch(batch, now, ttl_ms)
  local bk = key('batch', batch)
  local f = redis.call('HMGET', bk, 'total', 'n_succeeded', 'n_failed', 'n_canceled', 'status', 'spec')
  if tonumber(f[2]) + tonumber(f[3]) + tonumber(f[4]) < tonumber(f[1]) then return end
  if f[5] == 'running' then redis.call('HSET', bk, 'status', 'completed') end
  redis.call('HSET', bk, 'finished_at', now)
  redis.call('PEXPIRE', bk, ttl_ms)
  redis.call('PEXPIRE', key('idx', 'batch', batch), ttl_ms)
  redis.call('ZREM', key('lanes'), batch)
  announce('batch', batch)
  local spec = decoded(f[6])
  if spec.tracked then emit_run('batch', batch, now, ttl_ms) end
  if type(spec.webhook) == 'table' then emit_event('batch', batch, 'batch.completed', 'completed', now, ttl_ms) end
end

-- Status indexes and batch counts are kept for jobs only.
local function move_status(member, from, to)
  if not is_job(member) then return end
  local id = id_of(member)
  if from then redis.call('ZREM', key('idx', from), id) end
  redis.call('ZADD', key('idx', to), 0, id)
  announce('job', id)
  local batch = batch_of(member)
  if batch then
    local bk = key('batch', batch)
    if from then redis.call('HINCRBY', bk, 'n_' .. from, -1) end
    redis.call('HINCRBY', bk, 'n_' .. to, 1)
    announce('batch', batch)
  end
end

-- 'held' while the token owns a running item, 'canceled' if the client canceled it, else 'lost'.
local function lease_state(member, token)
  local f = redis.call('HMGET', record(member), 'status', 'token')
  if f[1] == 'canceled' then return 'canceled' end
  if f[1] ~= 'running' or f[2] ~= token then return 'lost' end
  return 'held'
end

-- Adds a finished job's usage (from its result or error) to its batch's sums.
local function add_usage(batch, jk)
  local f = redis.call('HMGET', jk, 'result', 'error')
  local ok, doc = pcall(cjson.decode, f[1] or f[2] or '')
  if not ok or type(doc) ~= 'table' or type(doc.usage) ~= 'table' or doc.usage.cached then return end
  local u, bk = doc.usage, key('batch', batch)
  redis.call('HINCRBY', bk, 'u_calls', tonumber(u.llm_calls) or 0)
  redis.call('HINCRBY', bk, 'u_prompt', tonumber(u.prompt_tokens) or 0)
  redis.call('HINCRBY', bk, 'u_completion', tonumber(u.completion_tokens) or 0)
  if type(u.cost_usd) == 'number' then
    -- Summed in nano-dollars, so the batch's cost is exact whatever order jobs finish in.
    redis.call('HINCRBY', bk, 'u_cost_nanos', math.floor(u.cost_usd * 1e9 + 0.5))
    redis.call('HSET', bk, 'u_priced', 1)
  end
end

-- Final transition: index, lease and queue bookkeeping, the time-to-live, and for a job its
-- MLflow run, and its batch's sums or its own event.
local function finish(member, status, now, ttl_ms)
  local rk = record(member)
  local from = redis.call('HGET', rk, 'status')
  redis.call('HSET', rk, 'status', status, 'finished_at', now)
  redis.call('HDEL', rk, 'token', 'lease_until')
  move_status(member, from, status)
  redis.call('ZREM', key('leases'), member)
  redis.call('ZREM', lane_of(member), member)
  redis.call('ZREM', key('dispatched'), member)
  redis.call('PEXPIRE', rk, ttl_ms)
  if is_run(member) then redis.call('DECR', key('mlflow_backlog')) end
  if not is_job(member) then return end
  local id = id_of(member)
  redis.call('ZADD', key('expiry'), now + ttl_ms, id)
  local spec = decoded(redis.call('HGET', rk, 'spec'))
  if spec.tracked then emit_run('job', id, now, ttl_ms) end
  local batch = batch_of(member)
  if batch then
    add_usage(batch, rk)
    settle_batch(batch, now, ttl_ms)
  elseif type(spec.webhook) == 'table' then
    emit_event('job', id, 'job.' .. status, status, now, ttl_ms)
  end
end

-- A delivery given up on without a worker's verdict (crashed workers, attempts exhausted) still
-- shows in its subject's delivery log.
local function log_lost_delivery(member, attempts, message, now, ttl_ms)
  if not is_delivery(member) then return end
  local spec = cjson.decode(redis.call('HGET', record(member), 'spec'))
  local log = key('deliveries', spec.subject_id)
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
  make_due(member, due)
end
