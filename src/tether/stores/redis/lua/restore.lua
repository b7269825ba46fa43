-- Writes the session exactly as given: nothing is stamped. The tail: n_fields (name, JSON)
-- pairs (every header field, as given), n_meta metadata pairs, n_items items (JSON with their
-- own seq and timestamp), then n_keys (key, index in the items, seq) triples of its keyed
-- items. ARG.updated_at (µs) is the index stamp; ARG.expected_version "" means any, else only
-- over that version of a live session.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', '_w')
if h[1] then
  if h[4] == ARG.nonce then return {'OK'} end  -- a retried restore that was applied
  if tonumber(h[3]) > tonumber(ARG.schema_version) then return {'NEWER', h[3]} end
  if ARG.expected_version ~= '' then
    if not live(h[2]) then return {'MISSING'} end
    if tonumber(h[1]) ~= tonumber(ARG.expected_version) then return {'CONFLICT', h[1]} end
  elseif live(h[2]) and ARG.replace ~= '1' then
    return {'EXISTS', h[1]}
  end
elseif ARG.expected_version ~= '' then
  return {'MISSING'}
end
drop(ID)
local n_meta, n_items = tonumber(ARG.n_meta), tonumber(ARG.n_items)
local fields, pos = tail_fields(tonumber(ARG.n_fields))
fields[#fields + 1] = '_w'
fields[#fields + 1] = ARG.nonce
push('HSET', H, fields)
if n_meta > 0 then set_meta(META, pos, n_meta) end
pos = pos + 2 * n_meta
local items = argv_list(pos, n_items)
if n_items > 0 then push('RPUSH', ITEMS, items) end
pos = pos + n_items
for i = 0, tonumber(ARG.n_keys) - 1 do  -- (key, index in the items, seq) triples
  local key, index = ARGV[pos + 3 * i], tonumber(ARGV[pos + 3 * i + 1])
  redis.call('HSET', IKEYS, key, items[index + 1])
  redis.call('ZADD', ISEQS, ARGV[pos + 3 * i + 2], key)
end
placed(tonumber(ARG.updated_at), ARG.owner_prefix, ARG.agent_prefix, ARG.status_prefix, ARG.expires_at,
  tonumber(ARG.store_ttl_ms), tonumber(ARG.schema_version))
return {'OK'}
