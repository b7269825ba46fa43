-- The namespace's listing indexes, and dropping a session. ARG.base is the key prefix
-- "tether:{ns}:".
--
-- Index entries: four lex-ordered sorted sets (all scores 0). A member is
-- <prefix><updated_at, 16 digits>:<id>, the prefix being "" (ix:updated), hex(owner) + ":",
-- hex(agent) + ":" or status + ":". Lex order is then (prefix, updated_at, id), so one ZRANGE
-- BYLEX REV reads a filter's sessions newest first with ties by id descending, and a cursor is
-- an exclusive lex bound. ix:who maps id -> "<updated>|<owner prefix>|<agent prefix>|<status
-- prefix>": what a session's entries are, even after Redis expired the session's own keys.
-- BASE is bound per call (_scripts.BINDS).
local function pad(n) return string.format('%016d', n) end
local function parse_who(who)
  return string.match(who or '', '^(%d+)|([^|]*)|([^|]*)|([^|]*)$')
end
local function members(id, d, po, pa, ps)
  local out = {{IX_UPDATED, d .. ':' .. id}}
  if po ~= '' then out[#out + 1] = {IX_OWNER, po .. d .. ':' .. id} end
  if pa ~= '' then out[#out + 1] = {IX_AGENT, pa .. d .. ':' .. id} end
  if ps ~= '' then out[#out + 1] = {IX_STATUS, ps .. d .. ':' .. id} end
  return out
end
-- Remove the entries `who` (the session's ix:who value, read by the caller) names.
local function drop_entries(id, who)
  local d, po, pa, ps = parse_who(who)
  if d then
    for _, m in ipairs(members(id, d, po, pa, ps)) do redis.call('ZREM', m[1], m[2]) end
  end
end
local function unindex(id)
  drop_entries(id, redis.call('HGET', IX_WHO, id))
  redis.call('HDEL', IX_WHO, id)
end
-- Move a session's entries to `updated` with the prefixes po, pa, ps (nil: the one it has, a
-- commit's "*"). One parse of its ix:who value and each member built once, the old entries
-- removed before the new ones are added; the HSET overwrites ix:who, so it needs no HDEL.
local function reindex(id, updated, po, pa, ps)
  local od, opo, opa, ops = parse_who(redis.call('HGET', IX_WHO, id))
  po, pa, ps = po or opo or '', pa or opa or '', ps or ops or ''
  local sid, d = ':' .. id, pad(updated)
  if od then
    redis.call('ZREM', IX_UPDATED, od .. sid)
    if opo ~= '' then redis.call('ZREM', IX_OWNER, opo .. od .. sid) end
    if opa ~= '' then redis.call('ZREM', IX_AGENT, opa .. od .. sid) end
    if ops ~= '' then redis.call('ZREM', IX_STATUS, ops .. od .. sid) end
  end
  redis.call('ZADD', IX_UPDATED, 0, d .. sid)
  if po ~= '' then redis.call('ZADD', IX_OWNER, 0, po .. d .. sid) end
  if pa ~= '' then redis.call('ZADD', IX_AGENT, 0, pa .. d .. sid) end
  if ps ~= '' then redis.call('ZADD', IX_STATUS, 0, ps .. d .. sid) end
  redis.call('HSET', IX_WHO, id, d .. '|' .. po .. '|' .. pa .. '|' .. ps)
end
local function drop(id)
  detach(id, 0)  -- its forks keep what they read (_shares.lua)
  local from = redis.call('HGET', BASE .. 's:' .. id, '_from')
  if from then redis.call('SREM', BASE .. 'd:' .. from, id) end
  redis.call('DEL', unpack(skeys(id)))
  unindex(id)
end
-- A session stored by a newer tether is never deleted here, expired or not: only a tether that
-- knows its schema may. `schema` is this tether's current schema version.
local function newer(id, schema)
  local v = tonumber(redis.call('HGET', BASE .. 's:' .. id, 'schema_version'))
  return v ~= nil and v > schema
end
-- Native expiry: at expires_at, or ttl_ms after now by Redis's clock, whichever is first.
local function expire(keys, expires, ttl_ms, persist)
  local at = nil
  local e = tonumber(expires)
  if e then at = math.ceil(e / 1000) end
  if ttl_ms > 0 then
    local t = redis.call('TIME')
    local by_ttl = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl_ms
    if not at or by_ttl < at then at = by_ttl end
  end
  for _, key in ipairs(keys) do
    if at then
      redis.call('PEXPIREAT', key, fmt(at))
    elseif persist then
      redis.call('PERSIST', key)
    end
  end
end
local function push(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
-- `count` arguments from ARGV[pos] on, as a list: a script's variable-length part.
local function argv_list(pos, count)
  local out = {}
  for i = 0, count - 1 do out[#out + 1] = ARGV[pos + i] end
  return out
end
local function set_meta(key, argv_pos, count)
  redis.call('DEL', key)
  push('HSET', key, argv_list(argv_pos, 2 * count))
end
-- History items arrive as (needs timestamp "1"/"0", JSON object without its closing brace)
-- pairs; the seq and the timestamp of now are added here, where both are known, with one
-- concatenation per item (each Lua string made is copied and hashed: a second one, from
-- cutting the brace off here, cost ~2 µs a commit of two chat messages).
-- The date of the last day iso() formatted: in the function library it lasts between calls
-- (a cache, never a value any call depends on), so the calendar arithmetic runs once a day.
local ISO_DAY, ISO_DATE = nil, nil
local function iso_date(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  return string.format('%04d-%02d-%02d', year, month, day)
end
local function iso(us)
  local secs = math.floor(us / 1000000)
  local frac = us - secs * 1000000
  if frac < 0 then secs = secs - 1; frac = frac + 1000000
  elseif frac >= 1000000 then secs = secs + 1; frac = frac - 1000000 end
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  if days ~= ISO_DAY then ISO_DAY, ISO_DATE = days, iso_date(days) end
  local hh = math.floor(rem / 3600)
  local mm = math.floor((rem - hh * 3600) / 60)
  return string.format('%sT%02d:%02d:%02d.%06d+00:00', ISO_DATE, hh, mm, rem - hh * 3600 - mm * 60,
    frac)
end
local function build_items(argv_pos, count, first_seq)
  local out, stamp = {}, nil
  for i = 0, count - 1 do
    local flag, open = ARGV[argv_pos + 2 * i], ARGV[argv_pos + 2 * i + 1]
    local sep = open == '{' and '"seq":' or ',"seq":'
    if flag == '1' then
      stamp = stamp or iso(NOW)
      out[#out + 1] = open .. sep .. fmt(first_seq + i) .. ',"timestamp":"' .. stamp .. '"}'
    else
      out[#out + 1] = open .. sep .. fmt(first_seq + i) .. '}'
    end
  end
  return out, stamp or iso(NOW)
end
-- Re-check the next few ix:updated entries (round robin): drop those whose session is gone.
local function sweep(n, schema)
  local from = redis.call('GET', IX_SWEEP)
  local batch = redis.call('ZRANGE', IX_UPDATED, from and ('(' .. from) or '-', '+',
    'BYLEX', 'LIMIT', 0, n)
  for _, m in ipairs(batch) do
    local id = string.sub(m, 18)
    local h = redis.call('HMGET', BASE .. 's:' .. id, 'version', 'expires_at')
    if not h[1] or (not live(h[2]) and not newer(id, schema)) then drop(id) end
  end
  if #batch < n then redis.call('DEL', IX_SWEEP) else redis.call('SET', IX_SWEEP, batch[#batch]) end
end
