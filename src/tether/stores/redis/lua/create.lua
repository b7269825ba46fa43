-- The tail: n_fields (name, JSON) pairs, n_meta metadata (key, canonical JSON) pairs, n_items
-- (needs timestamp, JSON) pairs. A retry of an applied create (same nonce) answers as it did.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', '_w', 'created_at')
if h[1] then
  if h[4] == ARG.nonce then return {'OK', h[5], iso(tonumber(h[5]))} end
  if tonumber(h[3]) > tonumber(ARG.schema_version) then return {'NEWER', h[3]} end
  if live(h[2]) then return {'EXISTS', h[1]} end
end
drop(ID)
local n_fields = tonumber(ARG.n_fields)
local n_meta, n_items = tonumber(ARG.n_meta), tonumber(ARG.n_items)
local pos = ARG_TAIL
local fields = argv_list(pos, 2 * n_fields)
pos = pos + 2 * n_fields
local n = fmt(n_items)
for _, v in ipairs({'version', '1', 'created_at', fmt(NOW), 'updated_at', fmt(NOW),
                    'last_seq', n, 'history_len', n, '_w', ARG.nonce}) do
  fields[#fields + 1] = v
end
push('HSET', H, fields)
if n_meta > 0 then set_meta(META, pos, n_meta) end
pos = pos + 2 * n_meta
local items, stamp = build_items(pos, n_items, 1)
push('RPUSH', ITEMS, items)
reindex(ID, NOW, ARG.owner_prefix, ARG.agent_prefix, ARG.status_prefix)
if not live(ARG.expires_at) then
  drop(ID)
else
  expire(SESSION_KEYS, ARG.expires_at, tonumber(ARG.store_ttl_ms), false)
  settle(ID)
end
sweep(SWEEP, tonumber(ARG.schema_version))
return {'OK', fmt(NOW), stamp}
