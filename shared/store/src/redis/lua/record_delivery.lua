-- ARGV: ns, event id, token, report_json ({status_code?, error?}), next ('delivered'|'retry'|'dead'),
-- delay_ms, ttl_ms. Appends the attempt to the job's delivery log and delivers, requeues or gives
-- up, only while the token holds the lease. Returns 'held' (written) | 'lost'.
local event_id, token, report, next_step = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delay, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local member = 'delivery:' .. event_id
local state = lease_state(member, token)
if state ~= 'held' then return state end
local rk = record(member)
local f = redis.call('HMGET', rk, 'spec', 'attempts')
local spec = cjson.decode(f[1])
local now = now_ms()
local entry = cjson.decode(report)
entry.event_id, entry.type, entry.attempt, entry.at_ms = spec.event_id, spec.type, tonumber(f[2]), now
local outcomes = {delivered = 'delivered', retry = 'retrying', dead = 'dead'}
entry.outcome = outcomes[next_step]
if next_step == 'retry' then entry.next_attempt_ms = now + delay end
local log = key('deliveries', spec.subject_id)
redis.call('RPUSH', log, cjson.encode(entry))
redis.call('PEXPIRE', log, ttl)
if next_step == 'delivered' then
  finish(member, 'succeeded', now, ttl)
elseif next_step == 'dead' then
  finish(member, 'failed', now, ttl)
else
  requeue(member, now + delay)
end
return 'held'
