-- ARG.expected_version "" deletes any version; ARG.lease_token is the lease token's JSON ("" none);
-- ARG.force "1" deletes whatever lease is held.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', 'lease_owner',
  'lease_token', 'lease_expires_at')
if not h[1] then unindex(ID); return {'MISSING'} end
if tonumber(h[3]) > tonumber(ARG.schema_version) then return {'NEWER', h[3]} end
if not live(h[2]) then drop(ID); return {'MISSING'} end
if ARG.force ~= '1' then
  local refused = lease_refused(h[4], h[5], h[6], ARG.lease_token)
  if refused then return refused end
end
if ARG.expected_version ~= '' and tonumber(ARG.expected_version) ~= tonumber(h[1]) then
  return {'CONFLICT', h[1]}
end
drop(ID)
return {'OK'}
