-- renew (ARG.lease_ttl_us: the new length) and release (ARG.lease_ttl_us ""). ARG.token is the
-- lease token's JSON; ARG.nonce marks a release, so a retried one that was applied says OK.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'lease_owner', 'lease_token',
  'lease_fence', 'lease_expires_at', '_w')
if not h[1] or not live(h[2]) then return {'GONE'} end
local token = h[4] or 'null'
local releasing = ARG.lease_ttl_us == ''
if releasing and token == 'null' and h[7] == ARG.nonce then return {'OK'} end
if token ~= ARG.token or not lease_live(token, h[6]) then
  return lease_state(h[3], token, h[6], ARG.token)
end
local store_ttl = tonumber(ARG.store_ttl_ms)
if store_ttl > 0 then expire(SESSION_KEYS, h[2], store_ttl, false); settle(ID) end
if releasing then
  redis.call('HSET', H, 'lease_token', 'null', 'lease_expires_at', 'null', '_w', ARG.nonce)
  return {'OK'}
end
local expires = fmt(NOW + tonumber(ARG.lease_ttl_us))
redis.call('HSET', H, 'lease_expires_at', expires)
return {'OK', h[3], h[5], expires}
