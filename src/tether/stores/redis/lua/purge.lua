-- Examines ARG.budget ix:updated entries after ARG.resume ("" from the first): drops sessions
-- that are expired by this store's clock (never a newer tether's) and the entries of sessions
-- Redis already removed. Returns {sessions dropped, resume ("" when done)}.
local budget = tonumber(ARG.budget)
local start = ARG.resume ~= '' and ('(' .. ARG.resume) or '-'
local batch = redis.call('ZRANGE', IX_UPDATED, start, '+', 'BYLEX', 'LIMIT', 0, budget)
local removed = 0
for _, m in ipairs(batch) do
  local id = string.sub(m, 18)
  local h = redis.call('HMGET', BASE .. 's:' .. id, 'version', 'expires_at')
  if not h[1] then
    unindex(id)
  elseif not live(h[2]) and not newer(id, tonumber(ARG.schema_version)) then
    drop(id)
    removed = removed + 1
  end
end
if #batch < budget then return {removed, ''} end
return {removed, batch[#batch]}
