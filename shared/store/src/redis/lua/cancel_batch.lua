-- ARGV: ns, batch id, ttl_ms. Cancels the batch's queued jobs; running ones finish.
-- Returns 'canceled' | 'finished' (nothing left to cancel) | 'missing'.
local batch, ttl = ARGV[2], tonumber(ARGV[3])
local bk = key('batch', batch)
local status = redis.call('HGET', bk, 'status')
if not status then return 'missing' end
if status ~= 'running' then return 'finished' end
redis.call('HSET', bk, 'status', 'canceled')
announce('batch', batch)
local now = now_ms()
for _, id in ipairs(redis.call('ZRANGE', key('idx', 'batch', batch), 0, -1)) do
  if redis.call('HGET', jobkey(id), 'status') == 'queued' then
    finish('job:' .. id, 'canceled', now, ttl)
  end
end
return 'canceled'
