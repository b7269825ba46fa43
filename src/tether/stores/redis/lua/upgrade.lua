-- The write-back of a session stored by an older tether: a compare-and-set on (ARG.version,
-- ARG.stored_schema_version) that changes no version. The tail: n_fields (name, JSON) pairs,
-- n_meta metadata pairs, n_items items, already numbered (n_items -1: keep the items).
local h = redis.call('HMGET', H, 'version', 'schema_version', 'updated_at', 'expires_at')
if not h[1] or not live(h[4]) or tonumber(h[1]) ~= tonumber(ARG.version)
   or tonumber(h[2]) ~= tonumber(ARG.stored_schema_version) then
  return 'RETRY'
end
local n_meta, n_items = tonumber(ARG.n_meta), tonumber(ARG.n_items)
local fields, pos = tail_fields(tonumber(ARG.n_fields))
push('HSET', H, fields)
set_meta(META, pos, n_meta)
pos = pos + 2 * n_meta
if n_items >= 0 then  -- every item, read through any share: the forks and the share go
  detach(ID, 0)
  local from = redis.call('HGET', H, '_from')
  if from then unshare(ID, from) end
  redis.call('DEL', ITEMS)
  push('RPUSH', ITEMS, argv_list(pos, n_items))
end
reindex(ID, tonumber(h[3]), ARG.owner_prefix, ARG.agent_prefix, ARG.status_prefix)
local expires = redis.call('HGET', H, 'expires_at')
if not live(expires) then
  drop(ID)
else
  expire(SESSION_KEYS, expires, tonumber(ARG.store_ttl_ms), true)
  settle(ID)
end
return 'OK'
