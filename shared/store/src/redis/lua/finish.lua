-- ARGV: ns, job id, token, status ('succeeded'|'failed'), field ('result'|'error'), payload_json, ttl_ms.
-- Writes only while the token holds the lease. Returns 'held' (written) | 'lost' | 'canceled'.
local id, token, status, field, payload, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local member = 'job:' .. id
local state = lease_state(member, token)
if state ~= 'held' then return state end
redis.call('HSET', jobkey(id), field, payload, 'stage', 'done')
finish(member, status, now_ms(), ttl)
return 'held'
