-- Forks share rows. A fork does not copy its parent's items: the child's header hash records
-- in "_from" the session whose items are its seqs 1.."_from_hi" (that session may read part
-- of them from its own "_from": a read follows the chain, "_depth" long, at most MAX_DEPTH),
-- and the parent lists the child in its dependents set d:<id>. A session's own items list
-- then starts at seq _from_hi + 1 (else at its history's first seq), so each seq is found at
-- exactly one level. Before a session's items are deleted or rewritten, detach() gives every
-- fork that reads them a copy of its own. Native expiry never takes a parent's items first:
-- settle() keeps a parent's keys alive at least as long as each of its forks' keys.
-- BASE (ARG.base) is bound per call (_scripts.BINDS).
local MAX_DEPTH = 16
local function skeys(id)
  return {BASE .. 's:' .. id, BASE .. 'h:' .. id, BASE .. 'm:' .. id, BASE .. 'k:' .. id,
    BASE .. 'ks:' .. id, BASE .. 'd:' .. id}
end
-- The items of `id` with seqs in (lo, hi], appended to `out`: the shared part through the
-- chain, then the own list's part (one LRANGE each).
local function read_range(id, lo, hi, out)
  local f = redis.call('HMGET', BASE .. 's:' .. id, '_from', '_from_hi', 'last_seq',
    'history_len')
  local fhi = tonumber(f[2])
  local own = fhi or (tonumber(f[3]) - tonumber(f[4]))
  if f[1] and fhi and lo < fhi then read_range(f[1], lo, math.min(hi, fhi), out) end
  local a = math.max(lo, own)
  if a < hi then
    local part = redis.call('LRANGE', BASE .. 'h:' .. id, a - own, hi - own - 1)
    for _, v in ipairs(part) do out[#out + 1] = v end
  end
  return out
end
-- Stop reading `from`'s items: `id` no longer shares any.
local function unshare(id, from)
  redis.call('HDEL', BASE .. 's:' .. id, '_from', '_from_hi', '_depth')
  redis.call('SREM', BASE .. 'd:' .. from, id)
end
-- Give each fork of `id` that reads its items above seq `above` a copy of them, in front of
-- its own list (which keeps its expiry, or takes the fork's header's).
local function detach(id, above)
  local dkey = BASE .. 'd:' .. id
  for _, dep in ipairs(redis.call('SMEMBERS', dkey)) do
    local dh = BASE .. 's:' .. dep
    local f = redis.call('HMGET', dh, '_from', '_from_hi')
    local hi = tonumber(f[2])
    if f[1] ~= id or not hi then
      redis.call('SREM', dkey, dep)  -- stale: gone by expiry, or detached before
    elseif hi > above then
      local items = read_range(id, 0, hi, {})
      local list = BASE .. 'h:' .. dep
      for i = #items, 1, -1000 do
        local batch = {}
        for j = i, math.max(1, i - 999), -1 do batch[#batch + 1] = items[j] end
        redis.call('LPUSH', list, unpack(batch))
      end
      local ttl = redis.call('PTTL', dh)
      if ttl > 0 and redis.call('PTTL', list) == -1 then redis.call('PEXPIRE', list, ttl) end
      unshare(dep, id)
    end
  end
end
local function pexpire_keys(keys, ttl)
  for _, key in ipairs(keys) do
    if ttl == -1 then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
  end
end
-- After `id`'s keys got their expiry: its parents' keys live at least as long (up the chain),
-- and its own at least as long as its forks' (their own settle() saw to theirs).
local function settle(id)
  local pt = redis.call('PTTL', BASE .. 's:' .. id)
  if pt == -2 then return end
  local deps = redis.call('SMEMBERS', BASE .. 'd:' .. id)
  if pt ~= -1 and #deps > 0 then
    local longest = pt
    for _, dep in ipairs(deps) do
      local dt = redis.call('PTTL', BASE .. 's:' .. dep)
      if dt == -1 then longest = -1; break end
      if dt > longest then longest = dt end
    end
    if longest ~= pt then pexpire_keys(skeys(id), longest); pt = longest end
  end
  local d = BASE .. 'd:' .. id
  if #deps > 0 and redis.call('PTTL', d) ~= pt then pexpire_keys({d}, pt) end
  local from = redis.call('HGET', BASE .. 's:' .. id, '_from')
  local depth = 0
  while from and depth < MAX_DEPTH * 2 do
    local ft = redis.call('PTTL', BASE .. 's:' .. from)
    if ft == -2 or ft == -1 then break end
    if pt == -1 or pt > ft then pexpire_keys(skeys(from), pt) end
    from = redis.call('HGET', BASE .. 's:' .. from, '_from')
    depth = depth + 1
  end
end
