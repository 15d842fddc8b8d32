-- ARGV: ns, item id (`job-<id>` | `batch-<id>`), token, next ('logged'|'retry'|'dead'), delay_ms,
-- error, ttl_ms. Finishes, requeues or gives up the MLflow run item, only while the token holds
-- the lease. Returns 'held' (written) | 'lost'.
local item, token, next_step = ARGV[2], ARGV[3], ARGV[4]
local delay, err, ttl = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local member = 'run:' .. item
local state = lease_state(member, token)
if state ~= 'held' then return state end
local rk, now = record(member), now_ms()
if next_step == 'logged' then
  finish(member, 'succeeded', now, ttl)
elseif next_step == 'dead' then
  redis.call('HSET', rk, 'error', cjson.encode({code = 'mlflow_run_failed', message = err}))
  finish(member, 'failed', now, ttl)
else
  redis.call('HSET', rk, 'last_error', cjson.encode({code = 'mlflow_unavailable', message = err}))
  requeue(member, now + delay)
end
return 'held'
