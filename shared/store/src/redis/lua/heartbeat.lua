-- ARGV: ns, worker name, capacity (jobs it runs at once).
redis.call('ZADD', key('workers'), now_ms(), ARGV[2])
redis.call('HSET', key('capacity'), ARGV[2], ARGV[3])
return 1
