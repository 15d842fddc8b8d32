-- Shared by every StoryForge store script; ARGV[1] is always the key namespace.
-- Times are Redis server time in milliseconds, so workers on machines with skewed clocks agree.
local ns = ARGV[1]
local function key(...) return ns .. ':' .. table.concat({...}, ':') end
local function jobkey(id) return ns .. ':job:' .. id end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function move_status(id, from, to)
  if from then redis.call('ZREM', key('idx', from), id) end
  redis.call('ZADD', key('idx', to), 0, id)
end
-- 'held' while the token owns a running job, 'canceled' if the client canceled it, else 'lost'.
local function lease_state(jk, token)
  local f = redis.call('HMGET', jk, 'status', 'token')
  if f[1] == 'canceled' then return 'canceled' end
  if f[1] ~= 'running' or f[2] ~= token then return 'lost' end
  return 'held'
end
-- Final transition: index, lease and queue bookkeeping, and the finished-job time-to-live.
local function finish(id, status, now, ttl_ms)
  local jk = jobkey(id)
  local from = redis.call('HGET', jk, 'status')
  redis.call('HSET', jk, 'status', status, 'finished_at', now)
  redis.call('HDEL', jk, 'token', 'lease_until')
  move_status(id, from, status)
  redis.call('ZREM', key('leases'), id)
  redis.call('ZREM', key('pending'), id)
  redis.call('ZREM', key('dispatched'), id)
  redis.call('PEXPIRE', jk, ttl_ms)
  redis.call('ZADD', key('expiry'), now + ttl_ms, id)
end
-- Back to due: for retries, hand-backs and expired leases.
local function requeue(id, due)
  local jk = jobkey(id)
  redis.call('HSET', jk, 'status', 'queued', 'stage', 'queued', 'due_at', due)
  redis.call('HDEL', jk, 'token', 'lease_until')
  move_status(id, 'running', 'queued')
  redis.call('ZREM', key('leases'), id)
  redis.call('ZADD', key('pending'), due, id)
end
