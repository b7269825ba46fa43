-- commit, append, replace_history and replace_tail. ARG.expected_version "" is a blind append
-- (any version); ARG.lease_token is the lease token's JSON ("" none); ARG.mode is append,
-- replace or tail; ARG.n_meta -1 leaves the metadata as it is; the new owner / agent / status
-- prefixes and expires_at JSON are "*" when unchanged; ARG.keep_runtime_block "1" keeps the
-- stored runtime block in the new state; ARG.after is the seq after which a tail is replaced.
-- The tail: n_changes (field, JSON) pairs, n_meta metadata pairs, n_items (needs timestamp,
-- JSON without its closing brace) pairs, then n_keys (key, offset in the batch) pairs. Every
-- refusal comes before the first write. The reply says what the write stamped: the new
-- version, the time (µs), the new last_seq and the lease fields as it left them (a commit never
-- changes them), so the store's commit_stamped needs no read; a retried call that finds its
-- write applied says the version.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', 'lease_owner',
  'lease_token', 'lease_expires_at', 'last_seq', 'history_len', '_w', '_from', '_from_hi',
  'lease_fence')
if not h[1] then return {'MISSING'} end
local version, expected = tonumber(h[1]), tonumber(ARG.expected_version)
-- The same write again (redis-py retried after a lost reply): it was applied, say so.
if h[9] == ARG.nonce and (expected == nil or version == expected + 1) then return {'OK', h[1]} end
local current = tonumber(ARG.schema_version)
if tonumber(h[3]) > current then return {'NEWER', h[3]} end  -- before expiry: never dropped
if not live(h[2]) then drop(ID); return {'MISSING'} end
local refused = lease_refused(h[4], h[5], h[6], ARG.lease_token)
if refused then return refused end
if expected ~= nil and version ~= expected then return {'CONFLICT', h[1]} end
if tonumber(h[3]) < current then return {'UPGRADE'} end
local n_changes, n_meta = tonumber(ARG.n_changes), tonumber(ARG.n_meta)
local n_items, n_keys = tonumber(ARG.n_items), tonumber(ARG.n_keys)
local mode = ARG.mode
local last_seq, len = tonumber(h[7]), tonumber(h[8])
local pos = ARG_TAIL
local item_pos = pos + 2 * n_changes + 2 * math.max(n_meta, 0)
local key_pos = item_pos + 2 * n_items
local after = tonumber(ARG.after)
if mode == 'tail' and (after < last_seq - len or after > last_seq) then
  return {'RANGE', fmt(last_seq - len + 1), fmt(last_seq)}
end
if mode ~= 'replace' then  -- a key the session keeps is taken
  for i = 0, n_keys - 1 do
    local taken = redis.call('ZSCORE', ISEQS, ARGV[key_pos + 2 * i])
    if taken and (mode ~= 'tail' or tonumber(taken) <= after) then
      return {'DUPKEY', ARGV[key_pos + 2 * i]}
    end
  end
end
local fields = argv_list(pos, 2 * n_changes)
pos = pos + 2 * n_changes
if ARG.keep_runtime_block == '1' then keep_runtime_block(fields) end
if n_meta >= 0 then set_meta(META, pos, n_meta); pos = pos + 2 * n_meta end
local from, from_hi = h[10], tonumber(h[11])
if mode == 'replace' then
  detach(ID, 0)  -- its forks keep what they read (_shares.lua)
  if from then unshare(ID, from) end
  redis.call('DEL', ITEMS, IKEYS, ISEQS)
  len = 0
elseif mode == 'tail' then
  -- O(the suffix): LTRIM drops only the removed items, ZRANGEBYSCORE finds only their keys
  detach(ID, after)
  local own = from_hi or (last_seq - len)
  local kept = after - own
  if kept <= 0 then redis.call('DEL', ITEMS) else redis.call('LTRIM', ITEMS, 0, kept - 1) end
  if from and after < from_hi then  -- cut below the share: it now ends at `after`
    if after == 0 then unshare(ID, from) else redis.call('HSET', H, '_from_hi', fmt(after)) end
  end
  local gone = redis.call('ZRANGEBYSCORE', ISEQS, '(' .. fmt(after), '+inf')
  if #gone > 0 then
    push('HDEL', IKEYS, gone)
    redis.call('ZREMRANGEBYSCORE', ISEQS, '(' .. fmt(after), '+inf')
  end
  last_seq, len = after, after - (last_seq - len)
end
local items = build_items(item_pos, n_items, last_seq + 1)
push('RPUSH', ITEMS, items)
for i = 0, n_keys - 1 do
  local key, offset = ARGV[key_pos + 2 * i], tonumber(ARGV[key_pos + 2 * i + 1])
  redis.call('HSET', IKEYS, key, items[offset + 1])
  redis.call('ZADD', ISEQS, fmt(last_seq + 1 + offset), key)
end
for _, v in ipairs({'version', fmt(version + 1), 'updated_at', fmt(NOW),
                    'last_seq', fmt(last_seq + n_items), 'history_len', fmt(len + n_items),
                    '_w', ARG.nonce}) do
  fields[#fields + 1] = v
end
push('HSET', H, fields)
local po, pa, ps = ARG.owner_prefix, ARG.agent_prefix, ARG.status_prefix  -- "*": unchanged
reindex(ID, NOW, po ~= '*' and po or nil, pa ~= '*' and pa or nil, ps ~= '*' and ps or nil)
local expires = h[2]
if ARG.expires_at ~= '*' then expires = ARG.expires_at end
if not live(expires) then
  drop(ID)
else
  local ttl = tonumber(ARG.store_ttl_ms)
  if ttl > 0 or ARG.expires_at ~= '*' or tonumber(expires) then
    expire(SESSION_KEYS, expires, ttl, ARG.expires_at ~= '*')
    settle(ID)
  end
end
return {'OK', fmt(version + 1), fmt(NOW), fmt(last_seq + n_items), h[4] or 'null',
  h[12] or 'null', h[6] or 'null'}
