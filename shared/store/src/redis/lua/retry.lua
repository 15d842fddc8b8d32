-- ARGV: ns, job id, token, delay_ms, last_error_json, final_error_json, max_attempts, ttl_ms.
-- Due again after the delay, or failed with final_error when out of attempts.
-- Returns 'held' (requeued, or failed for good: either way written) | 'lost' | 'canceled'.
local id, token, delay = ARGV[2], ARGV[3], tonumber(ARGV[4])
local last_error, final_error = ARGV[5], ARGV[6]
local max_attempts, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local member = 'job:' .. id
local jk = jobkey(id)
local state = lease_state(member, token)
if state ~= 'held' then return state end
local now = now_ms()
if tonumber(redis.call('HGET', jk, 'attempts')) >= max_attempts then
  redis.call('HSET', jk, 'error', final_error, 'stage', 'done')
  finish(member, 'failed', now, ttl)
  return 'held'
end
redis.call('HSET', jk, 'last_error', last_error)
requeue(member, now + delay)
return 'held'
