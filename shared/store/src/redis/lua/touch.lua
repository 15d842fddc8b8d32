-- ARGV: ns, member, token, lease_ms, stage ('' to keep). Returns 'held' | 'lost' | 'canceled'.
local member, token, lease_ms, stage = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local state = lease_state(member, token)
if state ~= 'held' then return state end
local rk = record(member)
local deadline = now_ms() + lease_ms
redis.call('HSET', rk, 'lease_until', deadline)
if stage ~= '' and redis.call('HGET', rk, 'stage') ~= stage then
  redis.call('HSET', rk, 'stage', stage)
  announce('job', id_of(member))
end
redis.call('ZADD', key('leases'), deadline, member)
return 'held'
