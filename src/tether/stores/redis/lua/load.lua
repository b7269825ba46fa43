-- Returns false when the session is missing or expired, else {header JSON, {item JSON, ...}}:
-- the window ARG.last / ARG.after ("" for none), at most ARG.limit items ("" for all: else only
-- the oldest `limit` items of the window, one bounded LRANGE). The items go back as the LRANGE
-- array: joining them into one JSON array inside Lua would copy megabytes several times (Lua
-- 5.1's buffer) and costs twice as much as decoding them one by one in the client (1,000 items
-- of 1 KB: 4.3 ms against 2.1 ms here).
local h = redis.call('HMGET', H, 'version', 'expires_at', 'last_seq', 'history_len')
if not h[1] or not live(h[2]) then return false end
local last_seq, len = tonumber(h[3]), tonumber(h[4])
local floor = last_seq - len
if ARG.after ~= '' then floor = math.max(floor, tonumber(ARG.after)) end
if ARG.last ~= '' then floor = math.max(floor, last_seq - tonumber(ARG.last)) end
local items = {}
if floor < last_seq then
  local start, stop = floor - (last_seq - len), -1
  if ARG.limit ~= '' then stop = start + tonumber(ARG.limit) - 1 end
  items = redis.call('LRANGE', ITEMS, start, stop)
end
return {header_json(H), items}
