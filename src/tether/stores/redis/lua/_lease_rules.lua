-- Lease state for the client to raise the right error: owner JSON, whose token ("none",
-- "match", "other": never the token itself), lease_expires_at JSON, now. The client raises
-- through tether's one set of lease rules (_core.check_write_lease).
local function lease_state(owner, token, expires, given)
  local state = 'other'
  if token == 'null' then state = 'none' elseif token == given then state = 'match' end
  return {'LEASE', owner or 'null', state, expires or 'null', fmt(NOW)}
end
local function lease_live(token, expires)
  local e = tonumber(expires)
  return token ~= 'null' and e ~= nil and e > NOW
end
-- The lease rules of a write: with a token (`given`, its JSON), it must be the live lease;
-- without one ("") no lease may be live. Returns the refusal, or nil when the write may go on.
local function lease_refused(owner, token, expires, given)
  token = token or 'null'
  if given ~= '' then
    if token ~= given or not lease_live(token, expires) then
      return lease_state(owner, token, expires, given)
    end
  elseif lease_live(token, expires) then
    return lease_state(owner, token, expires, given)
  end
  return nil
end
