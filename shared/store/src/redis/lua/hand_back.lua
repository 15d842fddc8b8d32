-- ARGV: ns, member, token. The attempt is given back too. Returns 'held' | 'lost' | 'canceled'.
local member, token = ARGV[2], ARGV[3]
local state = lease_state(member, token)
if state ~= 'held' then return state end
redis.call('HINCRBY', record(member), 'attempts', -1)
requeue(member, now_ms())
return 'held'
