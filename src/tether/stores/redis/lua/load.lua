-- Returns false when the session is missing or expired, else {header JSON, {item JSON, ...}}:
-- the window ARG.last / ARG.after ("" for none), at most ARG.limit items ("" for all: else only
-- the oldest `limit` items of the window, one bounded LRANGE per level of a fork's share chain,
-- see _shares.lua). One HMGET reads the header and the fork link "_from" together, and the
-- header goes back as one JSON text. The items go back as the LRANGE array: joining them into
-- one JSON array inside Lua would copy megabytes several times (Lua 5.1's buffer). ARG.listed
-- "1": the LRANGE queued after this script in the same MULTI reads the items (every item that
-- passes through Lua costs Redis ~10 times what the LRANGE costs), so the header JSON alone
-- comes back, unless the session reads items through a share: then the whole reply.
local v = redis.call('HMGET', H, '_from', unpack(HEADER_FIELDS))  -- v[1 + AT_x]: field x
local from = v[1]
if not v[1 + AT_VERSION] or not live(v[1 + AT_EXPIRES_AT]) then return false end
local last_seq, len = tonumber(v[1 + AT_LAST_SEQ]), tonumber(v[1 + AT_HISTORY_LEN])
local floor = last_seq - len
if ARG.after ~= '' then floor = math.max(floor, tonumber(ARG.after)) end
if ARG.last ~= '' then floor = math.max(floor, last_seq - tonumber(ARG.last)) end
if ARG.listed == '1' and not from then return header_doc(v, 1) end
local items = {}
if floor < last_seq then
  local hi = last_seq
  if ARG.limit ~= '' then hi = math.min(hi, floor + tonumber(ARG.limit)) end
  if from then
    items = read_range(ARG.session_id, floor, hi, {})
  else
    local start = floor - (last_seq - len)
    items = redis.call('LRANGE', ITEMS, start, start + hi - floor - 1)
  end
end
return {header_doc(v, 1), items}
