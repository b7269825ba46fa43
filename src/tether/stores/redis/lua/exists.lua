local h = redis.call('HMGET', H, 'version', 'expires_at')
if h[1] and live(h[2]) then return 1 end
return 0
