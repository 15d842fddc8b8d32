-- ARGV: ns, id, ttl_ms. Returns 'canceled' | 'finished' | 'missing'.
local id, ttl = ARGV[2], tonumber(ARGV[3])
local status = redis.call('HGET', jobkey(id), 'status')
if not status then return 'missing' end
if status ~= 'queued' and status ~= 'running' then return 'finished' end
finish('job:' .. id, 'canceled', now_ms(), ttl)
return 'canceled'
