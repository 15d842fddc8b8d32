-- ARGV: ns, subject ('job'|'batch'), id, ttl_ms. Makes the subject's webhook event due again,
-- keeping its id. Returns {'scheduled'|'pending', event id} | {'none'} | {'missing'}.
local subject, id, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local sk = key(subject, id)
if redis.call('EXISTS', sk) == 0 then return {'missing'} end
local event_id = redis.call('HGET', sk, 'event')
if not event_id then return {'none'} end
local member = 'delivery:' .. event_id
local rk = record(member)
local status = redis.call('HGET', rk, 'status')
if not status then return {'none'} end
if status == 'queued' or status == 'running' then return {'pending', event_id} end
redis.call('PERSIST', rk)
redis.call('PEXPIRE', rk, ttl)
redis.call('HDEL', rk, 'finished_at')
-- The retry window starts again from now.
local spec = cjson.decode(redis.call('HGET', rk, 'spec'))
spec.retry_from = now_ms()
redis.call('HSET', rk, 'spec', cjson.encode(spec))
requeue(member, now_ms())
return {'scheduled', event_id}
