-- ARG.which index to read (0 updated, 1 owner, 2 agent, 3 status) with its ARG.prefix, from
-- the ARG.upper lex bound down to ARG.lower; find ARG.want sessions, examining at most
-- ARG.budget entries. ARG.want_owner / want_agent prefixes and the "|status:|..." set
-- ARG.want_statuses must match ("*": any); the tail holds n_meta (key, canonical JSON) pairs
-- that must match too. Returns {{member, header JSON, ...}, resume} where resume is the last
-- member examined if the budget ran out first, else "".
local which = tonumber(ARG.which)
local idx = ({IX_UPDATED, IX_OWNER, IX_AGENT, IX_STATUS})[which + 1]
local prefix, upper, lower = ARG.prefix, ARG.upper, ARG.lower
local want, budget = tonumber(ARG.want), tonumber(ARG.budget)
local schema = tonumber(ARG.schema_version)
local want_po, want_pa, want_ps = ARG.want_owner, ARG.want_agent, ARG.want_statuses
local n_meta = tonumber(ARG.n_meta)
local meta_keys, meta_values = {}, {}
for i = 1, n_meta do
  meta_keys[i] = ARGV[ARG_TAIL + 2 * (i - 1)]
  meta_values[i] = ARGV[ARG_TAIL + 2 * (i - 1) + 1]
end
local function meta_ok(id)
  if n_meta == 0 then return true end
  local got = redis.call('HMGET', BASE .. 'm:' .. id, unpack(meta_keys))
  for i = 1, n_meta do
    if got[i] ~= meta_values[i] then return false end
  end
  return true
end
local plen = #prefix
local out, found, scanned = {}, 0, 0
while scanned < budget do
  local count = math.min(128, budget - scanned)
  local batch = redis.call('ZRANGE', idx, upper, lower, 'BYLEX', 'REV', 'LIMIT', 0, count)
  for _, m in ipairs(batch) do
    scanned = scanned + 1
    local d = string.sub(m, plen + 1, plen + 16)
    local id = string.sub(m, plen + 18)
    local key = BASE .. 's:' .. id
    local h = redis.call('HMGET', key, 'version', 'expires_at')
    if not h[1] or not live(h[2]) then
      -- expired: its keys (if Redis has not removed them yet) and every entry; a newer
      -- tether's session is only left out
      if not h[1] or not newer(id, schema) then drop(id) end
    else
      local wd, po, pa, ps = parse_who(redis.call('HGET', IX_WHO, id))
      local own = nil
      if wd then own = ({'', po, pa, ps})[which + 1] .. wd .. ':' .. id end
      if own ~= m then
        redis.call('ZREM', idx, m)  -- not this session's entry (any more)
      elseif (want_po == '*' or po == want_po) and (want_pa == '*' or pa == want_pa)
          and (want_ps == '*' or string.find(want_ps, '|' .. ps .. '|', 1, true))
          and meta_ok(id) then
        out[#out + 1] = m
        out[#out + 1] = header_json(key)
        found = found + 1
        if found >= want then return {out, ''} end
      end
    end
  end
  if #batch < count then return {out, ''} end
  upper = '(' .. batch[#batch]
end
return {out, string.sub(upper, 2)}
