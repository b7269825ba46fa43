-- The session a write script is about: ARG.session_id, and the keys that expire with it.
local ID = ARG.session_id
local SESSION_KEYS = {H, ITEMS, META, IKEYS, ISEQS}
