-- ARG.owner is the owner's JSON, ARG.token the new token's JSON (unique: a retry of an applied
-- claim finds it), ARG.lease_ttl_us the lease's length.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', 'lease_owner',
  'lease_token', 'lease_fence', 'lease_expires_at')
if not h[1] then return {'MISSING'} end
if h[5] == ARG.token then return {'OK', h[6], h[7]} end  -- a retried claim that was applied
if tonumber(h[3]) > tonumber(ARG.schema_version) then return {'NEWER', h[3]} end  -- never dropped
if not live(h[2]) then drop(ID); return {'MISSING'} end
-- Any live lease refuses, even one held under this owner's name: names are public, and only
-- the lease's token may act on it (renew, release).
if lease_live(h[5] or 'null', h[7]) then
  return {'CLAIMED', h[4], h[7]}
end
local fence = fmt((tonumber(h[6]) or 0) + 1)
local expires = fmt(NOW + tonumber(ARG.lease_ttl_us))
redis.call('HSET', H, 'lease_owner', ARG.owner, 'lease_token', ARG.token, 'lease_fence', fence,
  'lease_expires_at', expires)
local store_ttl = tonumber(ARG.store_ttl_ms)
if store_ttl > 0 then expire(SESSION_KEYS, h[2], store_ttl, false); settle(ID) end
return {'OK', fence, expires}
