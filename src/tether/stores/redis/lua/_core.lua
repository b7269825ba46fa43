-- Every script starts here. ARG.now is "now" in µs, or "" for Redis's own TIME; the header hash
-- holds one JSON text per field (HEADER_FIELDS), plus "_w", the nonce of the last write.
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- NOW is bound per call after the arguments (_scripts.BINDS): ARG.now, else server_now(), at
-- once in the scripts that write or list, else here, the first time live() needs it.
local function fmt(n) return string.format('%d', n) end
local function live(expires)
  local e = tonumber(expires)
  if e == nil then return true end
  if NOW == nil then NOW = server_now() end
  return e > NOW
end
-- The header document as one JSON text, from an HMGET of HEADER_FIELDS after `skip` other
-- fields (values past them are ignored): the client decodes one text, not one per field.
-- Each field's label ('{"id":', ',"version":', ...), made once: in the function library once
-- per load of the library, not once per call.
local HEADER_LABELS = {}
for i = 1, #HEADER_FIELDS do  -- a numeric loop: a library's loading code has no ipairs
  HEADER_LABELS[i] = (i == 1 and '{"' or ',"') .. HEADER_FIELDS[i] .. '":'
end
local function header_doc(values, skip)
  -- labels and values side by side, joined once: a big value (state) is copied once
  local parts, at, n = {}, skip or 0, #HEADER_LABELS
  for i = 1, n do
    parts[2 * i - 1] = HEADER_LABELS[i]
    parts[2 * i] = values[at + i] or 'null'
  end
  parts[2 * n + 1] = '}'
  return table.concat(parts)
end
local function header_json(key)
  return header_doc(redis.call('HMGET', key, unpack(HEADER_FIELDS)))
end
