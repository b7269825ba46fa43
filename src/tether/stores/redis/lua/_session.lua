-- The session a write script is about: ARG.session_id, and the keys that expire with it.
-- ID (ARG.session_id) and SESSION_KEYS {H, ITEMS, META, IKEYS, ISEQS} are bound per call
-- (_scripts.BINDS).
-- The tail's first n_fields (name, JSON) pairs as one list, and where the rest of it starts.
local function tail_fields(n_fields)
  return argv_list(ARG_TAIL, 2 * n_fields), ARG_TAIL + 2 * n_fields
end
-- The header fields a new session starts with (create, fork): version 1, made now, n items,
-- written by the write marked `nonce`; appended to `fields`.
local function new_fields(fields, n, nonce)
  for _, v in ipairs({'version', '1', 'created_at', fmt(NOW), 'updated_at', fmt(NOW),
                      'last_seq', n, 'history_len', n, '_w', nonce}) do
    fields[#fields + 1] = v
  end
end
-- A new session's last steps (create, fork, restore): its index entries stamped `updated`,
-- then its expiry, or nothing left of it if `expires` already passed; then the round-robin
-- sweep of the namespace's index.
local function placed(updated, po, pa, ps, expires, ttl_ms, schema)
  reindex(ID, updated, po, pa, ps)
  if not live(expires) then
    drop(ID)
  else
    expire(SESSION_KEYS, expires, ttl_ms, false)
    settle(ID)
  end
  sweep(SWEEP, schema)
end
