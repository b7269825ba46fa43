-- fork_session: the child ARG.session_id reads its parent ARG.parent_id's items up to seq
-- ARG.at (see _shares.lua): nothing is copied but the parent's keyed rows up to there (the
-- child's keys are its own). The tail: n_fields (name, JSON) pairs, n_meta metadata pairs.
-- Refusals come first; 'COPY' when the parent must be copied instead (compacted: the child
-- numbers from 1; a chain MAX_DEPTH deep; stored by an older tether).
local PH = BASE .. 's:' .. ARG.parent_id
local p = redis.call('HMGET', PH, 'version', 'expires_at', 'schema_version', 'last_seq',
  'history_len', '_depth')
if not p[1] or not live(p[2]) then return {'MISSING'} end
local current = tonumber(ARG.schema_version)
if tonumber(p[3]) > current then return {'NEWER', p[3]} end
local at, last_seq, len = tonumber(ARG.at), tonumber(p[4]), tonumber(p[5])
if at < last_seq - len or at > last_seq then
  return {'RANGE', fmt(last_seq - len + 1), fmt(last_seq)}
end
local depth = tonumber(p[6]) or 0
if tonumber(p[3]) < current or len ~= last_seq or depth >= MAX_DEPTH then return {'COPY'} end
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', '_w', 'created_at')
if h[1] then
  if h[4] == ARG.nonce then return {'OK', h[5]} end
  if tonumber(h[3]) > current then return {'NEWER', h[3], 'child'} end
  if live(h[2]) then return {'EXISTS', h[1]} end
end
drop(ID)
local fields, meta_pos = tail_fields(tonumber(ARG.n_fields))
local n = fmt(at)
new_fields(fields, n, ARG.nonce)
if at > 0 then
  for _, v in ipairs({'_from', ARG.parent_id, '_from_hi', n, '_depth', fmt(depth + 1)}) do
    fields[#fields + 1] = v
  end
  redis.call('SADD', BASE .. 'd:' .. ARG.parent_id, ID)
end
push('HSET', H, fields)
local n_meta = tonumber(ARG.n_meta)
if n_meta > 0 then set_meta(META, meta_pos, n_meta) end
local keyed = redis.call('ZRANGEBYSCORE', BASE .. 'ks:' .. ARG.parent_id, '-inf', n, 'WITHSCORES')
if #keyed > 0 then
  local names, seqs = {}, {}
  for i = 1, #keyed, 2 do
    names[#names + 1] = keyed[i]
    seqs[#seqs + 1] = keyed[i + 1]
    seqs[#seqs + 1] = keyed[i]
  end
  local rows = redis.call('HMGET', BASE .. 'k:' .. ARG.parent_id, unpack(names))
  local pairs_ = {}
  for i, name in ipairs(names) do
    pairs_[#pairs_ + 1] = name
    pairs_[#pairs_ + 1] = rows[i]
  end
  push('HSET', IKEYS, pairs_)
  push('ZADD', ISEQS, seqs)
end
placed(NOW, ARG.owner_prefix, ARG.agent_prefix, ARG.status_prefix, ARG.expires_at,
  tonumber(ARG.store_ttl_ms), current)
return {'OK', fmt(NOW)}
