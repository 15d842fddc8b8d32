-- ARGV: ns, live_window_ms. Returns the provider reports of live workers.
local live = redis.call('ZRANGEBYSCORE', key('workers'), now_ms() - tonumber(ARGV[2]), '+inf')
local out = {}
if #live > 0 then
  for _, report in ipairs(redis.call('HMGET', key('providers'), unpack(live))) do
    if report then table.insert(out, report) end
  end
end
return out
