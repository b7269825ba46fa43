-- The tail: n_fields (name, JSON) pairs, n_meta metadata (key, canonical JSON) pairs, n_items
-- (needs timestamp, JSON without its closing brace) pairs. A retry of an applied create (same
-- nonce) answers as it did.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', '_w', 'created_at')
if h[1] then
  if h[4] == ARG.nonce then return {'OK', h[5], iso(tonumber(h[5]))} end
  if tonumber(h[3]) > tonumber(ARG.schema_version) then return {'NEWER', h[3]} end
  if live(h[2]) then return {'EXISTS', h[1]} end
end
drop(ID)
local n_meta, n_items = tonumber(ARG.n_meta), tonumber(ARG.n_items)
local fields, pos = tail_fields(tonumber(ARG.n_fields))
local n = fmt(n_items)
new_fields(fields, n, ARG.nonce)
push('HSET', H, fields)
if n_meta > 0 then set_meta(META, pos, n_meta) end
pos = pos + 2 * n_meta
local items, stamp = build_items(pos, n_items, 1)
push('RPUSH', ITEMS, items)
placed(NOW, ARG.owner_prefix, ARG.agent_prefix, ARG.status_prefix, ARG.expires_at,
  tonumber(ARG.store_ttl_ms), tonumber(ARG.schema_version))
return {'OK', fmt(NOW), stamp}
