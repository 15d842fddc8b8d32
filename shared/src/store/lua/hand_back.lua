-- ARGV: ns, id, token. The attempt is given back too. Returns 'held' | 'lost' | 'canceled'.
local id, token = ARGV[2], ARGV[3]
local jk = jobkey(id)
local state = lease_state(jk, token)
if state ~= 'held' then return state end
redis.call('HINCRBY', jk, 'attempts', -1)
requeue(id, now_ms())
return 'held'
