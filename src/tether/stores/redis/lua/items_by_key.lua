-- The keyed rows of the keys in the tail: one HMGET, so the cost of a key does not depend on
-- the history. Returns false when the session is missing or expired.
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version')
if not h[1] or not live(h[2]) then return false end
if tonumber(h[3]) > tonumber(ARG.schema_version) then return {'NEWER', h[3]} end
if #ARGV < ARG_TAIL then return {'OK', {}} end
local rows = redis.call('HMGET', IKEYS, unpack(ARGV, ARG_TAIL))
local out = {}
for _, row in ipairs(rows) do if row then out[#out + 1] = row end end
return {'OK', out}
