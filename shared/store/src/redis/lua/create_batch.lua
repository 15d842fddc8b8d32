-- ARGV: ns, batch id, batch spec json, idempotency key ('' for none), body hash, ttl_ms, then
-- (job id, job spec json) pairs. Creates the batch and every job, queued and due, in one step.
-- Returns {'created', batch id} | {'replay', batch id} | {'conflict', batch id}.
local batch, spec, idem, hash, idem_ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now = now_ms()
if idem ~= '' then
  local ik = key('idem', 'batch', idem)
  local earlier = redis.call('HMGET', ik, 'id', 'hash')
  if earlier[1] and redis.call('EXISTS', key('batch', earlier[1])) == 1 then
    if earlier[2] == hash then return {'replay', earlier[1]} end
    return {'conflict', earlier[1]}
  end
  redis.call('HSET', ik, 'id', batch, 'hash', hash)
  redis.call('PEXPIRE', ik, idem_ttl)
end
local total = (#ARGV - 6) / 2
redis.call('HSET', key('batch', batch), 'spec', spec, 'status', 'running', 'total', total,
  'created_at', now, 'n_queued', 0, 'n_running', 0, 'n_succeeded', 0, 'n_failed', 0,
  'n_canceled', 0, 'u_calls', 0, 'u_prompt', 0, 'u_completion', 0, 'u_cost_nanos', 0)
redis.call('ZADD', key('idx', 'batches'), 0, batch)
for i = 7, #ARGV, 2 do
  local id = ARGV[i]
  redis.call('HSET', jobkey(id), 'spec', ARGV[i + 1], 'status', 'queued', 'stage', 'queued',
    'attempts', 0, 'created_at', now, 'due_at', now, 'batch', batch)
  move_status('job:' .. id, nil, 'queued')
  redis.call('ZADD', key('idx', 'all'), 0, id)
  redis.call('ZADD', key('idx', 'batch', batch), 0, id)
  make_due('job:' .. id, now)
end
return {'created', batch}
