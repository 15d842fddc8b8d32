-- ARGV: ns, job id, ttl_ms. Makes the job's webhook event due again, keeping its id.
-- Returns {'scheduled'|'pending', event id} | {'none'} | {'missing'}.
local id, ttl = ARGV[2], tonumber(ARGV[3])
local jk = jobkey(id)
if redis.call('EXISTS', jk) == 0 then return {'missing'} end
local event_id = redis.call('HGET', jk, 'event')
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
