-- ARGV: ns, id, token, lease_ms, stage ('' to keep). Returns 'held' | 'lost' | 'canceled'.
local id, token, lease_ms, stage = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local jk = jobkey(id)
local state = lease_state(jk, token)
if state ~= 'held' then return state end
local deadline = now_ms() + lease_ms
redis.call('HSET', jk, 'lease_until', deadline)
if stage ~= '' then redis.call('HSET', jk, 'stage', stage) end
redis.call('ZADD', key('leases'), deadline, id)
return 'held'
