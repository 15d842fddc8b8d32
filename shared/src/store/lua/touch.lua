-- ARGV: ns, member, token, lease_ms, stage ('' to keep). Returns 'held' | 'lost' | 'canceled'.
local member, token, lease_ms, stage = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local state = lease_state(member, token)
if state ~= 'held' then return state end
local rk = record(member)
local deadline = now_ms() + lease_ms
redis.call('HSET', rk, 'lease_until', deadline)
if stage ~= '' then redis.call('HSET', rk, 'stage', stage) end
redis.call('ZADD', key('leases'), deadline, member)
return 'held'
