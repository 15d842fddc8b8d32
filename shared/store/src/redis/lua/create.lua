-- ARGV: ns, id, spec_json, idempotency_key ('' for none), body_hash, idempotency_ttl_ms, batch_id ('' for none)
local id, spec, idem, hash, idem_ttl, batch = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local now = now_ms()
if idem ~= '' then
  local ik = key('idem', idem)
  local earlier = redis.call('HMGET', ik, 'id', 'hash')
  if earlier[1] and redis.call('EXISTS', jobkey(earlier[1])) == 1 then
    if earlier[2] == hash then return {'replay', earlier[1]} end
    return {'conflict', earlier[1]}
  end
  redis.call('HSET', ik, 'id', id, 'hash', hash)
  redis.call('PEXPIRE', ik, idem_ttl)
end
redis.call('HSET', jobkey(id), 'spec', spec, 'status', 'queued', 'stage', 'queued',
  'attempts', 0, 'created_at', now, 'due_at', now)
move_status('job:' .. id, nil, 'queued')
redis.call('ZADD', key('idx', 'all'), 0, id)
if batch ~= '' then redis.call('ZADD', key('idx', 'batch', batch), 0, id) end
make_due('job:' .. id, now)
return {'created', id}
