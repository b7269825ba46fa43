-- Every script starts here. ARG.now is "now" in µs, or "" for Redis's own TIME; the header hash
-- holds one JSON text per field (HEADER_FIELDS), plus "_w", the nonce of the last write.
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- NOW is bound per call after the arguments (_scripts.BINDS): ARG.now, else server_now().
local function fmt(n) return string.format('%d', n) end
local function live(expires)
  local e = tonumber(expires)
  return e == nil or e > NOW
end
-- The header document as one JSON text, from an HMGET of HEADER_FIELDS after `skip` other
-- fields (values past them are ignored): the client decodes one text, not one per field.
local function header_doc(values, skip)
  -- labels and values side by side, joined once: a big value (state) is copied once
  local parts, at = {'{'}, skip or 0
  for i, name in ipairs(HEADER_FIELDS) do
    parts[2 * i] = (i == 1 and '"' or ',"') .. name .. '":'
    parts[2 * i + 1] = values[at + i] or 'null'
  end
  parts[#parts + 1] = '}'
  return table.concat(parts)
end
local function header_json(key)
  return header_doc(redis.call('HMGET', key, unpack(HEADER_FIELDS)))
end
