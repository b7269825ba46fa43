"""The parts of the Redis store that do no I/O, shared by its async and sync sides.

Key names, the Lua scripts, argument encoding and reply decoding live here, so that
``redis_async.py`` (and the ``redis_sync.py`` generated from it) only move bytes: *encode here
-> one round trip (an EVALSHA, or a MULTI/EXEC for a whole-history load) -> decode here, or
raise*. The layout is described in ``docs/redis.md`` and in the
docstring of :mod:`tether.stores.redis_async`.

Numbers inside the scripts: Lua 5.1 numbers are doubles, exact for integers below 2**53, which
holds microsecond timestamps until the year 2255. The scripts never let Lua print a number with
``tostring`` (14 significant digits); they format with ``%d``. They never decode or re-encode
user JSON either (Redis's cjson would round big integers and turn ``{}`` into ``[]``): every
header field is stored as its own JSON text, and the scripts only compare, copy and concatenate
those texts.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn
from urllib.parse import urlunsplit

from .. import _core, _json
from .._ids import validate_session_id
from .._time import Clock, from_micros, to_micros
from .._urls import as_float, parse_store_url, redact
from ..errors import (
    AlreadyClaimed,
    ConfigurationError,
    ConflictError,
    CorruptSession,
    DuplicateItemKey,
    InvalidRequest,
    InvalidSessionId,
    LeaseLost,
    SessionExists,
    SessionNotFound,
    StoreError,
    TetherError,
)
from ..models import HistoryItem, KeyedItem, Lease, Page, Session, SessionHeader, StoredItem
from ..schema import schema

log = logging.getLogger("tether.stores.redis")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_NAMESPACE = "default"
SOCKET_TIMEOUT = 5.0
"""Seconds a reply may take before the call fails with StoreUnavailable."""
CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection before the call fails with StoreUnavailable."""
LIST_BUDGET = 1000
"""Index entries one list script may examine before it returns and the client resumes it:
bounds how long a selective listing can hold the Redis server (a few ms per script call)."""
SWEEP = 2
"""Index entries every create re-checks (round robin), so entries of sessions that Redis
expired by itself cannot pile up even in a namespace nobody lists."""
MAX_STAMP = 10**16 - 1
"""The largest timestamp (µs) an index entry can hold: 16 digits, past the year 2286."""
MAX_LEASE_MICROS = 2**52
"""Longer leases are cut to ~142 years so that now + ttl stays exact inside Lua."""

# Every header field but the lease token, in the order the scripts return them. Each is
# stored as its own JSON text in the session's header hash.
HEADER_FIELDS = tuple(name for name in _core.DOC_FIELDS if name != "lease_token")
# What create writes from Python; the script sets version, timestamps and history counts.
_CREATE_FIELDS = tuple(
    name
    for name in (*HEADER_FIELDS, "lease_token")
    if name not in ("version", "created_at", "updated_at", "last_seq", "history_len")
)
# What an upgrade write-back rewrites: not the lease (a claim may land between the read and the
# write and does not change the version), not what keeps the items and the indexes consistent.
_UPGRADE_FIELDS = tuple(
    name
    for name in HEADER_FIELDS
    if name
    not in (
        "id",
        "version",
        "updated_at",
        "last_seq",
        "history_len",
        "lease_owner",
        "lease_fence",
        "lease_expires_at",
    )
)

# --- configuration -----------------------------------------------------------------------------


def check_namespace(namespace: object) -> str:
    """A namespace follows the session id rules: safe inside a key and a SCAN MATCH pattern."""
    try:
        return validate_session_id(namespace)
    except InvalidSessionId as exc:
        raise ConfigurationError(
            f"namespace {namespace!r} is not valid: use 1-128 characters from [A-Za-z0-9._:-], "
            "not starting with '.'"
        ) from exc


def ttl_millis(ttl: float | timedelta | None) -> int:
    """The store-wide idle expiry in milliseconds (0: none)."""
    if ttl is None:
        return 0
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ConfigurationError(f"ttl must be seconds >= 0 (0 or None: no expiry), not {ttl!r}")
    return 0 if seconds == 0 else max(1, round(seconds * 1000))


def _positive(text: str) -> float:
    value = as_float(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a number of seconds > 0")
    return value


def _namespace_option(text: str) -> str:
    try:
        return check_namespace(text)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from exc


URL_OPTIONS = {
    "namespace": _namespace_option,
    "ttl": as_float,
    "socket_timeout": _positive,
    "socket_connect_timeout": _positive,
}


@dataclass(frozen=True)
class UrlConfig:
    client_url: str
    """The URL for redis-py: scheme, credentials, host, port and database, no tether options."""
    namespace: str = DEFAULT_NAMESPACE
    ttl: float = 0.0
    socket_timeout: float = SOCKET_TIMEOUT
    socket_connect_timeout: float = CONNECT_TIMEOUT


def parse_url(url: str) -> UrlConfig:
    """``redis://[user:password@]host[:port][/db]?namespace=..&ttl=..`` (or ``rediss://``)."""
    scheme = url.split(":", 1)[0].lower() if isinstance(url, str) else ""
    if scheme not in ("redis", "rediss"):
        shown = redact(url) if isinstance(url, str) else url
        raise ConfigurationError(f"expected a redis:// or rediss:// URL, got {shown!r}")
    netloc, path, options = parse_store_url(url, scheme, URL_OPTIONS)
    if path not in ("", "/") and not path.lstrip("/").isdigit():
        raise ConfigurationError(
            f"{redact(url)!r}: the path must be a database number (redis://host:6379/0), "
            f"not {path!r}"
        )
    return UrlConfig(client_url=urlunsplit((scheme, netloc, path, "", "")), **options)


# A server that answers the connection's AUTH or SELECT with one of these answers every retry
# the same way: the URL is wrong (a wrong password, a user without the rights, a database
# number the server does not have), so it is a ConfigurationError, not StoreUnavailable.
_PERMANENT_REPLIES = ("WRONGPASS", "NOAUTH", "NOPERM", "DB index is out of range")


def is_permanent_refusal(exc: Exception) -> bool:
    return any(reply in str(exc) for reply in _PERMANENT_REPLIES)


def refused_error(where: str, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"Redis at {where} refused the store URL ({str(exc).strip().rstrip('.')}); fix the user, "
        "password or database number in the URL, or the user's ACL; retrying will not help"
    )


def describe_client(kwargs: Mapping[str, Any]) -> str:
    """host:port/db of a client's connection pool, for error messages."""
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


@dataclass(frozen=True)
class Keys:
    """Every key of one namespace. All share the hash tag ``{namespace}``: one cluster slot."""

    namespace: str
    base: str
    index: tuple[str, ...]
    """updated, owner, agent, status (lex-ordered sorted sets), who (hash), sweep (string)."""

    @classmethod
    def for_namespace(cls, namespace: str) -> Keys:
        base = f"tether:{{{check_namespace(namespace)}}}:"
        names = ("ix:updated", "ix:owner", "ix:agent", "ix:status", "ix:who", "ix:sweep")
        return cls(namespace, base, tuple(base + name for name in names))

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern for this namespace's keys (the namespace has no glob chars)."""
        return self.base + "*"

    def session(self, session_id: str) -> list[str]:
        """Header hash, items list, metadata hash. ``session_id`` must be validated."""
        return [
            self.base + "s:" + session_id,
            self.base + "h:" + session_id,
            self.base + "m:" + session_id,
        ]

    def item_keys(self, session_id: str) -> list[str]:
        """Keyed items: a hash key -> the item's row, and a sorted set of the keys by seq
        (to drop the keys of a removed tail by seq range)."""
        return [self.base + "k:" + session_id, self.base + "ks:" + session_id]

    def write_keys(self, session_id: str) -> list[str]:
        return [*self.index, *self.session(session_id), *self.item_keys(session_id)]


def now_arg(clock: Clock | None) -> str:
    """What the scripts take for "now": an injected clock's µs, or "" for Redis's own TIME."""
    return "" if clock is None else str(to_micros(clock()))


def new_nonce() -> str:
    """Marks one write, so a retry after a lost reply sees it was applied (see the scripts)."""
    return secrets.token_hex(8)


def new_token() -> str:
    """A lease token: secret, and unique, so it also marks its claim as applied."""
    return secrets.token_hex(16)


def prefix_of(value: str | None) -> str:
    """The index prefix of an owner or agent: hex, so any text is safe in a lex range."""
    if value is None:
        return ""
    return value.encode("utf-8", "surrogatepass").hex() + ":"


def _pad(micros: int) -> str:
    return f"{micros:016d}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def json_text(value: Any) -> bytes:
    return _json.dumps(value)


# --- the Lua scripts ---------------------------------------------------------------------------

# Every script: ARGV[1] is now in µs ("" for Redis TIME). The header hash holds one JSON text per
# field, plus "_w", the nonce of the last write.
_CORE = """
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local NOW = ARGV[1] ~= '' and tonumber(ARGV[1]) or server_now()
local function fmt(n) return string.format('%d', n) end
local function live(expires)
  local e = tonumber(expires)
  return e == nil or e > NOW
end
local HEADER_FIELDS = {@HEADER_FIELDS@}
local function header_json(key)
  local values = redis.call('HMGET', key, unpack(HEADER_FIELDS))
  local parts = {}
  for i, name in ipairs(HEADER_FIELDS) do
    parts[i] = '"' .. name .. '":' .. (values[i] or 'null')
  end
  return '{' .. table.concat(parts, ',') .. '}'
end
""".replace("@HEADER_FIELDS@", ", ".join(f"'{name}'" for name in HEADER_FIELDS))

# Scripts that write: KEYS[1..6] are the namespace's index keys, KEYS[7..9] the session's header,
# items and metadata; ARGV[2] is the key prefix "tether:{ns}:" and ARGV[3] the session id.
#
# Index entries: four lex-ordered sorted sets (all scores 0). A member is
# <prefix><updated_at, 16 digits>:<id>, the prefix being "" (ix:updated), hex(owner) + ":",
# hex(agent) + ":" or status + ":". Lex order is then (prefix, updated_at, id), so one ZRANGE
# BYLEX REV reads a filter's sessions newest first with ties by id descending, and a cursor is
# an exclusive lex bound. ix:who maps id -> "<updated>|<owner prefix>|<agent prefix>|<status
# prefix>": what a session's entries are, even after Redis expired the session's own keys.
_INDEX = """
local IX_UPDATED, IX_OWNER, IX_AGENT, IX_STATUS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local IX_WHO, IX_SWEEP = KEYS[5], KEYS[6]
local BASE = ARGV[2]
local function pad(n) return string.format('%016d', n) end
local function parse_who(who)
  return string.match(who or '', '^(%d+)|([^|]*)|([^|]*)|([^|]*)$')
end
local function members(id, d, po, pa, ps)
  local out = {{IX_UPDATED, d .. ':' .. id}}
  if po ~= '' then out[#out + 1] = {IX_OWNER, po .. d .. ':' .. id} end
  if pa ~= '' then out[#out + 1] = {IX_AGENT, pa .. d .. ':' .. id} end
  if ps ~= '' then out[#out + 1] = {IX_STATUS, ps .. d .. ':' .. id} end
  return out
end
local function unindex(id)
  local d, po, pa, ps = parse_who(redis.call('HGET', IX_WHO, id))
  if d then
    for _, m in ipairs(members(id, d, po, pa, ps)) do redis.call('ZREM', m[1], m[2]) end
  end
  redis.call('HDEL', IX_WHO, id)
end
local function reindex(id, updated, po, pa, ps)
  unindex(id)
  local d = pad(updated)
  for _, m in ipairs(members(id, d, po, pa, ps)) do redis.call('ZADD', m[1], 0, m[2]) end
  redis.call('HSET', IX_WHO, id, d .. '|' .. po .. '|' .. pa .. '|' .. ps)
end
local function drop(id)
  redis.call('DEL', BASE .. 's:' .. id, BASE .. 'h:' .. id, BASE .. 'm:' .. id,
    BASE .. 'k:' .. id, BASE .. 'ks:' .. id)
  unindex(id)
end
-- A session stored by a newer tether is never deleted here, expired or not: only a tether that
-- knows its schema may. `schema` is this tether's current schema version.
local function newer(id, schema)
  local v = tonumber(redis.call('HGET', BASE .. 's:' .. id, 'schema_version'))
  return v ~= nil and v > schema
end
local function prefixes(id)
  local _, po, pa, ps = parse_who(redis.call('HGET', IX_WHO, id))
  return po or '', pa or '', ps or ''
end
-- Native expiry: at expires_at, or ttl_ms after now by Redis's clock, whichever is first.
local function expire(keys, expires, ttl_ms, persist)
  local at = nil
  local e = tonumber(expires)
  if e then at = math.ceil(e / 1000) end
  if ttl_ms > 0 then
    local t = redis.call('TIME')
    local by_ttl = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl_ms
    if not at or by_ttl < at then at = by_ttl end
  end
  for _, key in ipairs(keys) do
    if at then
      redis.call('PEXPIREAT', key, fmt(at))
    elseif persist then
      redis.call('PERSIST', key)
    end
  end
end
local function push(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
local function set_meta(key, argv_pos, count)
  redis.call('DEL', key)
  local pairs_ = {}
  for i = 0, 2 * count - 1 do pairs_[#pairs_ + 1] = ARGV[argv_pos + i] end
  push('HSET', key, pairs_)
end
-- History items arrive as (needs timestamp "1"/"0", JSON object without seq) pairs; the seq
-- and the timestamp of now are added here, where both are known.
local function iso(us)
  local secs = math.floor(us / 1000000)
  local frac = us - secs * 1000000
  if frac < 0 then secs = secs - 1; frac = frac + 1000000
  elseif frac >= 1000000 then secs = secs + 1; frac = frac - 1000000 end
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  local hh = math.floor(rem / 3600)
  local mm = math.floor((rem - hh * 3600) / 60)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00',
    year, month, day, hh, mm, rem - hh * 3600 - mm * 60, frac)
end
local function build_items(argv_pos, count, first_seq)
  local out, stamp = {}, nil
  for i = 0, count - 1 do
    local flag, rest = ARGV[argv_pos + 2 * i], ARGV[argv_pos + 2 * i + 1]
    local tail = '"seq":' .. fmt(first_seq + i)
    if flag == '1' then
      stamp = stamp or iso(NOW)
      tail = tail .. ',"timestamp":"' .. stamp .. '"'
    end
    if rest == '{}' then
      out[#out + 1] = '{' .. tail .. '}'
    else
      out[#out + 1] = string.sub(rest, 1, -2) .. ',' .. tail .. '}'
    end
  end
  return out, stamp or iso(NOW)
end
-- Re-check the next few ix:updated entries (round robin): drop those whose session is gone.
local function sweep(n, schema)
  local from = redis.call('GET', IX_SWEEP)
  local batch = redis.call('ZRANGE', IX_UPDATED, from and ('(' .. from) or '-', '+',
    'BYLEX', 'LIMIT', 0, n)
  for _, m in ipairs(batch) do
    local id = string.sub(m, 18)
    local h = redis.call('HMGET', BASE .. 's:' .. id, 'version', 'expires_at')
    if not h[1] or (not live(h[2]) and not newer(id, schema)) then drop(id) end
  end
  if #batch < n then redis.call('DEL', IX_SWEEP) else redis.call('SET', IX_SWEEP, batch[#batch]) end
end
-- The session a write script is about (unused by list and purge, which pass no session).
local H, ITEMS, META = KEYS[7], KEYS[8], KEYS[9]
local IKEYS, ISEQS = KEYS[10], KEYS[11]  -- keyed items: key -> row, and key by seq
local SESSION_KEYS = {H, ITEMS, META, IKEYS, ISEQS}  -- what expires with the session
local ID = ARGV[3]
"""

# load: KEYS header, items; ARGV now, last ("" for all), after (""), limit ("" for none: else
# only the oldest `limit` items of the window, one bounded LRANGE). Returns nil when missing or
# expired, else {header JSON, {item JSON, ...}}. The items go back as the LRANGE array: joining
# them into one JSON array inside Lua would copy megabytes several times (Lua 5.1's buffer) and
# costs twice as much as decoding them one by one in the client (1,000 items of 1 KB: 4.3 ms
# against 2.1 ms here).
LOAD = (
    _CORE
    + """
local h = redis.call('HMGET', KEYS[1], 'version', 'expires_at', 'last_seq', 'history_len')
if not h[1] or not live(h[2]) then return false end
local last_seq, len = tonumber(h[3]), tonumber(h[4])
local floor = last_seq - len
if ARGV[3] ~= '' then floor = math.max(floor, tonumber(ARGV[3])) end
if ARGV[2] ~= '' then floor = math.max(floor, last_seq - tonumber(ARGV[2])) end
local items = {}
if floor < last_seq then
  local start, stop = floor - (last_seq - len), -1
  if ARGV[4] ~= '' then stop = start + tonumber(ARGV[4]) - 1 end
  items = redis.call('LRANGE', KEYS[2], start, stop)
end
return {header_json(KEYS[1]), items}
"""
)

# items_by_key: KEYS header, keyed rows; ARGV now, schema, then the keys. One HMGET: the cost
# of a key does not depend on the history. Returns nil when missing or expired.
ITEMS_BY_KEY = (
    _CORE
    + """
local h = redis.call('HMGET', KEYS[1], 'version', 'expires_at', 'schema_version')
if not h[1] or not live(h[2]) then return false end
if tonumber(h[3]) > tonumber(ARGV[2]) then return {'NEWER', h[3]} end
if #ARGV < 3 then return {'OK', {}} end
local rows = redis.call('HMGET', KEYS[2], unpack(ARGV, 3))
local out = {}
for _, row in ipairs(rows) do if row then out[#out + 1] = row end end
return {'OK', out}
"""
)

EXISTS = (
    _CORE
    + """
local h = redis.call('HMGET', KEYS[1], 'version', 'expires_at')
if h[1] and live(h[2]) then return 1 end
return 0
"""
)

# create: ARGV 4 schema, 5 store ttl ms, 6 nonce, 7-9 owner/agent/status prefixes, 10 expires_at
# JSON, 11 field count, 12 metadata pair count, 13 item count, then fields, metadata, items.
CREATE = (
    _CORE
    + _INDEX
    + """
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', '_w', 'created_at')
if h[1] then
  if h[4] == ARGV[6] then return {'OK', h[5], iso(tonumber(h[5]))} end
  if tonumber(h[3]) > tonumber(ARGV[4]) then return {'NEWER', h[3]} end
  if live(h[2]) then return {'EXISTS', h[1]} end
end
drop(ID)
local n_fields, n_meta, n_items = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local pos = 14
local fields = {}
for i = 0, 2 * n_fields - 1 do fields[#fields + 1] = ARGV[pos + i] end
pos = pos + 2 * n_fields
local n = fmt(n_items)
for _, v in ipairs({'version', '1', 'created_at', fmt(NOW), 'updated_at', fmt(NOW),
                    'last_seq', n, 'history_len', n, '_w', ARGV[6]}) do
  fields[#fields + 1] = v
end
push('HSET', H, fields)
if n_meta > 0 then set_meta(META, pos, n_meta) end
pos = pos + 2 * n_meta
local items, stamp = build_items(pos, n_items, 1)
push('RPUSH', ITEMS, items)
reindex(ID, NOW, ARGV[7], ARGV[8], ARGV[9])
if not live(ARGV[10]) then
  drop(ID)
else
  expire(SESSION_KEYS, ARGV[10], tonumber(ARGV[5]), false)
end
sweep(@SWEEP@, tonumber(ARGV[4]))
return {'OK', fmt(NOW), stamp}
""".replace("@SWEEP@", str(SWEEP))
)

# restore: ARGV 4 schema, 5 store ttl ms, 6 replace ("1"/"0"), 7 nonce, 8-10 owner/agent/status
# prefixes, 11 expires_at JSON, 12 updated_at µs (the index stamp), 13 field count, 14 metadata
# pair count, 15 item count, 16 expected version ("": any; else only over that version of a
# live session), then fields (every header field, as given), metadata, items (JSON with their
# own seq and timestamp), then (key, index, seq) of its keyed items (17: their count). Writes the
# session exactly as given: nothing is stamped.
RESTORE = (
    _CORE
    + _INDEX
    + """
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', '_w')
if h[1] then
  if h[4] == ARGV[7] then return {'OK'} end  -- a retried restore that was applied
  if tonumber(h[3]) > tonumber(ARGV[4]) then return {'NEWER', h[3]} end
  if ARGV[16] ~= '' then
    if not live(h[2]) then return {'MISSING'} end
    if tonumber(h[1]) ~= tonumber(ARGV[16]) then return {'CONFLICT', h[1]} end
  elseif live(h[2]) and ARGV[6] ~= '1' then
    return {'EXISTS', h[1]}
  end
elseif ARGV[16] ~= '' then
  return {'MISSING'}
end
drop(ID)
local n_fields, n_meta, n_items = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local pos = 18
local fields = {}
for i = 0, 2 * n_fields - 1 do fields[#fields + 1] = ARGV[pos + i] end
fields[#fields + 1] = '_w'
fields[#fields + 1] = ARGV[7]
pos = pos + 2 * n_fields
push('HSET', H, fields)
if n_meta > 0 then set_meta(META, pos, n_meta) end
pos = pos + 2 * n_meta
local items = {}
if n_items > 0 then
  for i = 0, n_items - 1 do items[#items + 1] = ARGV[pos + i] end
  push('RPUSH', ITEMS, items)
end
pos = pos + n_items
for i = 0, tonumber(ARGV[17]) - 1 do  -- (key, index in the items, seq) triples
  local key, index = ARGV[pos + 3 * i], tonumber(ARGV[pos + 3 * i + 1])
  redis.call('HSET', IKEYS, key, items[index + 1])
  redis.call('ZADD', ISEQS, ARGV[pos + 3 * i + 2], key)
end
reindex(ID, tonumber(ARGV[12]), ARGV[8], ARGV[9], ARGV[10])
if not live(ARGV[11]) then
  drop(ID)
else
  expire(SESSION_KEYS, ARGV[11], tonumber(ARGV[5]), false)
end
sweep(@SWEEP@, tonumber(ARGV[4]))
return {'OK'}
""".replace("@SWEEP@", str(SWEEP))
)

# Lease state for the client to raise the right error: owner JSON, whose token ("none",
# "match", "other": never the token itself), lease_expires_at JSON, now.
_LEASE_STATE = """
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
"""

# The runtime's block in state (see _core.keep_runtime_block): an application's new state keeps
# the stored one. json_member finds a top-level member's value in a stored JSON object by
# scanning it, not decoding it (cjson would round big integers and turn {} into []), so the
# block is copied byte for byte; strings are skipped whole, so a brace, a quote or a
# "_tether" inside one is never taken for structure.
_JSON_MEMBER = """
local QUOTE_OR_ESCAPE = '["' .. string.char(92) .. ']'
local function string_end(s, i)  -- i at a string's opening quote: the closing quote's index
  while true do
    i = string.find(s, QUOTE_OR_ESCAPE, i + 1)
    if string.byte(s, i) == 34 then return i end
    i = i + 1  -- the escaped character
  end
end
local function value_end(s, i)  -- i at a value's first character: its last character's index
  local c = string.byte(s, i)
  if c == 34 then return string_end(s, i) end
  if c ~= 123 and c ~= 91 then return string.find(s, '[%s,}%]]', i) - 1 end
  local depth = 0
  while true do
    i = string.find(s, '[{}%[%]"]', i)
    c = string.byte(s, i)
    if c == 34 then
      i = string_end(s, i)
    elseif c == 123 or c == 91 then
      depth = depth + 1
    else
      depth = depth - 1
      if depth == 0 then return i end
    end
    i = i + 1
  end
end
local function json_member(s, key)
  local i = string.find(s, '%S')
  if not i or string.byte(s, i) ~= 123 then return nil end
  i = string.find(s, '%S', i + 1)
  while i and string.byte(s, i) == 34 do
    local e = string_end(s, i)
    local v = string.find(s, '%S', string.find(s, ':', e + 1, true) + 1)
    local last = value_end(s, v)
    if string.sub(s, i + 1, e - 1) == key then return string.sub(s, v, last) end
    i = string.find(s, '%S', last + 1)
    if string.byte(s, i) ~= 44 then return nil end  -- '}': no such member
    i = string.find(s, '%S', i + 1)
  end
  return nil
end
local function keep_runtime_block(fields)
  local block = json_member(redis.call('HGET', H, 'state') or '{}', '@RUNTIME_KEY@')
  if not block then return end
  for i = 1, #fields, 2 do
    if fields[i] == 'state' then
      local new = fields[i + 1]
      local head = new == '{}' and '{' or (string.sub(new, 1, -2) .. ',')
      fields[i + 1] = head .. '"@RUNTIME_KEY@":' .. block .. '}'
    end
  end
end
""".replace("@RUNTIME_KEY@", _core.RUNTIME_KEY)

# commit, append, replace_history and replace_tail: ARGV 4 expected version ("": a blind append,
# any version), 5 schema, 6 lease token JSON ("" none), 7 store ttl ms, 8 nonce, 9 mode
# (append|replace|tail), 10 change count, 11 metadata pair count (-1: unchanged), 12 item count,
# 13-15 new owner/agent/status prefixes ("*": unchanged), 16 new expires_at JSON ("*":
# unchanged), 17 keep the stored runtime block in the new state ("1"/"0"), 18 the seq after
# which a tail is replaced (mode tail), 19 keyed item count, then changes, metadata, items, and
# (key, offset in the batch) pairs. Every refusal comes before the first write.
COMMIT = (
    _CORE
    + _INDEX
    + _LEASE_STATE
    + _JSON_MEMBER
    + """
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', 'lease_owner',
  'lease_token', 'lease_expires_at', 'last_seq', 'history_len', '_w')
if not h[1] then return {'MISSING'} end
local version, expected = tonumber(h[1]), tonumber(ARGV[4])
-- The same write again (redis-py retried after a lost reply): it was applied, say so.
if h[9] == ARGV[8] and (expected == nil or version == expected + 1) then return {'OK', h[1]} end
local current = tonumber(ARGV[5])
if tonumber(h[3]) > current then return {'NEWER', h[3]} end  -- before expiry: never dropped
if not live(h[2]) then drop(ID); return {'MISSING'} end
local refused = lease_refused(h[4], h[5], h[6], ARGV[6])
if refused then return refused end
if expected ~= nil and version ~= expected then return {'CONFLICT', h[1]} end
if tonumber(h[3]) < current then return {'UPGRADE'} end
local n_changes, n_meta, n_items = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local mode, n_keys = ARGV[9], tonumber(ARGV[19])
local last_seq, len = tonumber(h[7]), tonumber(h[8])
local pos = 20
local item_pos = pos + 2 * n_changes + 2 * math.max(n_meta, 0)
local key_pos = item_pos + 2 * n_items
local after = tonumber(ARGV[18])
if mode == 'tail' and (after < last_seq - len or after > last_seq) then
  return {'RANGE', fmt(last_seq - len + 1), fmt(last_seq)}
end
if mode ~= 'replace' then  -- a key the session keeps is taken
  for i = 0, n_keys - 1 do
    local taken = redis.call('ZSCORE', ISEQS, ARGV[key_pos + 2 * i])
    if taken and (mode ~= 'tail' or tonumber(taken) <= after) then
      return {'DUPKEY', ARGV[key_pos + 2 * i]}
    end
  end
end
local fields = {}
for i = 0, 2 * n_changes - 1 do fields[#fields + 1] = ARGV[pos + i] end
pos = pos + 2 * n_changes
if ARGV[17] == '1' then keep_runtime_block(fields) end
if n_meta >= 0 then set_meta(META, pos, n_meta); pos = pos + 2 * n_meta end
if mode == 'replace' then
  redis.call('DEL', ITEMS, IKEYS, ISEQS)
  len = 0
elseif mode == 'tail' then
  -- O(the suffix): LTRIM drops only the removed items, ZRANGEBYSCORE finds only their keys
  local kept = after - (last_seq - len)
  if kept == 0 then redis.call('DEL', ITEMS) else redis.call('LTRIM', ITEMS, 0, kept - 1) end
  local gone = redis.call('ZRANGEBYSCORE', ISEQS, '(' .. fmt(after), '+inf')
  if #gone > 0 then
    push('HDEL', IKEYS, gone)
    redis.call('ZREMRANGEBYSCORE', ISEQS, '(' .. fmt(after), '+inf')
  end
  last_seq, len = after, kept
end
local items = build_items(item_pos, n_items, last_seq + 1)
push('RPUSH', ITEMS, items)
for i = 0, n_keys - 1 do
  local key, offset = ARGV[key_pos + 2 * i], tonumber(ARGV[key_pos + 2 * i + 1])
  redis.call('HSET', IKEYS, key, items[offset + 1])
  redis.call('ZADD', ISEQS, fmt(last_seq + 1 + offset), key)
end
for _, v in ipairs({'version', fmt(version + 1), 'updated_at', fmt(NOW),
                    'last_seq', fmt(last_seq + n_items), 'history_len', fmt(len + n_items),
                    '_w', ARGV[8]}) do
  fields[#fields + 1] = v
end
push('HSET', H, fields)
local po, pa, ps = prefixes(ID)
if ARGV[13] ~= '*' then po = ARGV[13] end
if ARGV[14] ~= '*' then pa = ARGV[14] end
if ARGV[15] ~= '*' then ps = ARGV[15] end
reindex(ID, NOW, po, pa, ps)
local expires = h[2]
if ARGV[16] ~= '*' then expires = ARGV[16] end
if not live(expires) then
  drop(ID)
else
  local ttl = tonumber(ARGV[7])
  if ttl > 0 or ARGV[16] ~= '*' or tonumber(expires) then
    expire(SESSION_KEYS, expires, ttl, ARGV[16] ~= '*')
  end
end
return {'OK', fmt(version + 1)}
"""
)

# upgrade write-back: ARGV 4 version, 5 stored schema version, 6 store ttl ms, 7 field count,
# 8 metadata pair count, 9 item count (-1: keep the items), 10-12 prefixes, then pairs and items
# (already numbered). Compare-and-set on (version, schema_version); changes no version.
UPGRADE = (
    _CORE
    + _INDEX
    + """
local h = redis.call('HMGET', H, 'version', 'schema_version', 'updated_at', 'expires_at')
if not h[1] or not live(h[4]) or tonumber(h[1]) ~= tonumber(ARGV[4])
   or tonumber(h[2]) ~= tonumber(ARGV[5]) then
  return 'RETRY'
end
local n_fields, n_meta, n_items = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local pos = 13
local fields = {}
for i = 0, 2 * n_fields - 1 do fields[#fields + 1] = ARGV[pos + i] end
pos = pos + 2 * n_fields
push('HSET', H, fields)
set_meta(META, pos, n_meta)
pos = pos + 2 * n_meta
if n_items >= 0 then
  local items = {}
  for i = 0, n_items - 1 do items[#items + 1] = ARGV[pos + i] end
  redis.call('DEL', ITEMS)
  push('RPUSH', ITEMS, items)
end
reindex(ID, tonumber(h[3]), ARGV[10], ARGV[11], ARGV[12])
local expires = redis.call('HGET', H, 'expires_at')
if not live(expires) then
  drop(ID)
else
  expire(SESSION_KEYS, expires, tonumber(ARGV[6]), true)
end
return 'OK'
"""
)

# delete: ARGV 4 expected version ("" any), 5 schema, 6 lease token JSON ("" none), 7 force
# ("1": whatever lease is held).
DELETE = (
    _CORE
    + _INDEX
    + _LEASE_STATE
    + """
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', 'lease_owner',
  'lease_token', 'lease_expires_at')
if not h[1] then unindex(ID); return {'MISSING'} end
if tonumber(h[3]) > tonumber(ARGV[5]) then return {'NEWER', h[3]} end
if not live(h[2]) then drop(ID); return {'MISSING'} end
if ARGV[7] ~= '1' then
  local refused = lease_refused(h[4], h[5], h[6], ARGV[6])
  if refused then return refused end
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= tonumber(h[1]) then return {'CONFLICT', h[1]} end
drop(ID)
return {'OK'}
"""
)

# claim: ARGV 4 owner JSON, 5 lease ttl µs, 6 new token JSON, 7 schema, 8 store ttl ms.
CLAIM = (
    _CORE
    + _INDEX
    + _LEASE_STATE
    + """
local h = redis.call('HMGET', H, 'version', 'expires_at', 'schema_version', 'lease_owner',
  'lease_token', 'lease_fence', 'lease_expires_at')
if not h[1] then return {'MISSING'} end
if h[5] == ARGV[6] then return {'OK', h[6], h[7]} end  -- a retried claim that was applied
if tonumber(h[3]) > tonumber(ARGV[7]) then return {'NEWER', h[3]} end  -- never dropped
if not live(h[2]) then drop(ID); return {'MISSING'} end
-- Any live lease refuses, even one held under this owner's name: names are public, and only
-- the lease's token may act on it (renew, release).
if lease_live(h[5] or 'null', h[7]) then
  return {'CLAIMED', h[4], h[7]}
end
local fence = fmt((tonumber(h[6]) or 0) + 1)
local expires = fmt(NOW + tonumber(ARGV[5]))
redis.call('HSET', H, 'lease_owner', ARGV[4], 'lease_token', ARGV[6], 'lease_fence', fence,
  'lease_expires_at', expires)
if tonumber(ARGV[8]) > 0 then expire(SESSION_KEYS, h[2], tonumber(ARGV[8]), false) end
return {'OK', fence, expires}
"""
)

# renew (ARGV 5 = ttl µs) and release (ARGV 5 = ""): ARGV 4 token JSON, 6 store ttl ms, 7 nonce.
LEASE = (
    _CORE
    + _INDEX
    + _LEASE_STATE
    + """
local h = redis.call('HMGET', H, 'version', 'expires_at', 'lease_owner', 'lease_token',
  'lease_fence', 'lease_expires_at', '_w')
if not h[1] or not live(h[2]) then return {'GONE'} end
local token = h[4] or 'null'
if ARGV[5] == '' and token == 'null' and h[7] == ARGV[7] then return {'OK'} end
if token ~= ARGV[4] or not lease_live(token, h[6]) then
  return lease_state(h[3], token, h[6], ARGV[4])
end
if tonumber(ARGV[6]) > 0 then expire(SESSION_KEYS, h[2], tonumber(ARGV[6]), false) end
if ARGV[5] == '' then
  redis.call('HSET', H, 'lease_token', 'null', 'lease_expires_at', 'null', '_w', ARGV[7])
  return {'OK'}
end
local expires = fmt(NOW + tonumber(ARGV[5]))
redis.call('HSET', H, 'lease_expires_at', expires)
return {'OK', h[3], h[5], expires}
"""
)

# list: KEYS[1..6] the index keys. ARGV 3 which index (0 updated, 1 owner, 2 agent, 3 status),
# 4 its prefix, 5 upper and 6 lower lex bound, 7 how many to find, 8 entries to examine at most,
# 9 schema, 10-12 owner/agent prefix and "|status:|..." set that must match ("*": any),
# 13 metadata pair count, then (key, canonical JSON) pairs. Returns {{member, header JSON, ...},
# resume} where resume is the last member examined if the budget ran out first, else "".
LIST = (
    _CORE
    + _INDEX
    + """
local which = tonumber(ARGV[3])
local idx = ({IX_UPDATED, IX_OWNER, IX_AGENT, IX_STATUS})[which + 1]
local prefix, upper, lower = ARGV[4], ARGV[5], ARGV[6]
local want, budget, schema = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local want_po, want_pa, want_ps = ARGV[10], ARGV[11], ARGV[12]
local n_meta = tonumber(ARGV[13])
local meta_keys, meta_values = {}, {}
for i = 1, n_meta do
  meta_keys[i] = ARGV[12 + 2 * i]
  meta_values[i] = ARGV[13 + 2 * i]
end
local function meta_ok(id)
  if n_meta == 0 then return true end
  local got = redis.call('HMGET', BASE .. 'm:' .. id, unpack(meta_keys))
  for i = 1, n_meta do
    if got[i] ~= meta_values[i] then return false end
  end
  return true
end
local plen = #prefix
local out, found, scanned = {}, 0, 0
while scanned < budget do
  local count = math.min(128, budget - scanned)
  local batch = redis.call('ZRANGE', idx, upper, lower, 'BYLEX', 'REV', 'LIMIT', 0, count)
  for _, m in ipairs(batch) do
    scanned = scanned + 1
    local d = string.sub(m, plen + 1, plen + 16)
    local id = string.sub(m, plen + 18)
    local key = BASE .. 's:' .. id
    local h = redis.call('HMGET', key, 'version', 'expires_at')
    if not h[1] or not live(h[2]) then
      -- expired: its keys (if Redis has not removed them yet) and every entry; a newer
      -- tether's session is only left out
      if not h[1] or not newer(id, schema) then drop(id) end
    else
      local wd, po, pa, ps = parse_who(redis.call('HGET', IX_WHO, id))
      local own = nil
      if wd then own = ({'', po, pa, ps})[which + 1] .. wd .. ':' .. id end
      if own ~= m then
        redis.call('ZREM', idx, m)  -- not this session's entry (any more)
      elseif (want_po == '*' or po == want_po) and (want_pa == '*' or pa == want_pa)
          and (want_ps == '*' or string.find(want_ps, '|' .. ps .. '|', 1, true))
          and meta_ok(id) then
        out[#out + 1] = m
        out[#out + 1] = header_json(key)
        found = found + 1
        if found >= want then return {out, ''} end
      end
    end
  end
  if #batch < count then return {out, ''} end
  upper = '(' .. batch[#batch]
end
return {out, string.sub(upper, 2)}
"""
)

# purge: KEYS[1..6] the index keys; ARGV 3 the ix:updated member to resume after ("" first),
# 4 how many entries to examine, 5 schema. Drops sessions that are expired by this store's clock
# (never a newer tether's) and the entries of sessions Redis already removed. Returns
# {sessions dropped, resume ("" when done)}.
PURGE = (
    _CORE
    + _INDEX
    + """
local budget = tonumber(ARGV[4])
local batch = redis.call('ZRANGE', IX_UPDATED, ARGV[3] ~= '' and ('(' .. ARGV[3]) or '-', '+',
  'BYLEX', 'LIMIT', 0, budget)
local removed = 0
for _, m in ipairs(batch) do
  local id = string.sub(m, 18)
  local h = redis.call('HMGET', BASE .. 's:' .. id, 'version', 'expires_at')
  if not h[1] then
    unindex(id)
  elseif not live(h[2]) and not newer(id, tonumber(ARGV[5])) then
    drop(id)
    removed = removed + 1
  end
end
if #batch < budget then return {removed, ''} end
return {removed, batch[#batch]}
"""
)

SCRIPTS = {
    "load": LOAD,
    "exists": EXISTS,
    "items_by_key": ITEMS_BY_KEY,
    "create": CREATE,
    "restore": RESTORE,
    "commit": COMMIT,
    "upgrade": UPGRADE,
    "delete": DELETE,
    "claim": CLAIM,
    "lease": LEASE,
    "list": LIST,
    "purge": PURGE,
}

# --- arguments ---------------------------------------------------------------------------------

EncodedItem = tuple[bool, bytes]
"""A new history item: whether it needs the commit's timestamp, and its JSON without ``seq``."""


def encode_items(items: Iterable[Mapping[str, Any] | KeyedItem]) -> _core.UnnumberedItems:
    """Check and encode new history items before any I/O; the script numbers and stamps them."""
    return _core.encode_unnumbered_items(items)


def _item_args(items: Sequence[EncodedItem]) -> list[str | bytes]:
    out: list[str | bytes] = []
    for needs_stamp, data in items:
        out += ("1" if needs_stamp else "0", data)
    return out


def _meta_args(metadata: Mapping[str, Any]) -> list[str]:
    return [part for pair in _core.metadata_index(metadata) for part in pair]


def create_args(
    keys: Keys,
    doc: _core.Doc,
    items: Sequence[EncodedItem],
    *,
    now: str,
    ttl_ms: int,
    nonce: str,
) -> list[Any]:
    fields: list[str | bytes] = []
    for name in _CREATE_FIELDS:
        fields += (name, json_text(doc[name]))
    meta = _meta_args(doc["metadata"])
    return [
        now,
        keys.base,
        doc["id"],
        schema.current,
        ttl_ms,
        nonce,
        prefix_of(doc["owner"]),
        prefix_of(doc["agent"]),
        doc["status"] + ":",
        json_text(doc["expires_at"]),
        len(fields) // 2,
        len(meta) // 2,
        len(items),
        *fields,
        *meta,
        *_item_args(items),
    ]


def restore_args(
    keys: Keys,
    doc: _core.Doc,
    items: _core.PreparedItems,
    *,
    replace: bool,
    expected_version: int | None = None,
    now: str,
    ttl_ms: int,
    nonce: str,
) -> list[Any]:
    """Arguments of the restore script: ``doc`` and ``items`` from :func:`_core.restore_doc`."""
    updated = doc["updated_at"]
    if not 0 <= updated <= MAX_STAMP:
        raise InvalidRequest(
            f"session {doc['id']!r}: updated_at must lie between 1970 and 2286 to be stored "
            "in the Redis store's indexes"
        )
    fields: list[str | bytes] = []
    for name in (*HEADER_FIELDS, "lease_token"):
        fields += (name, json_text(doc[name]))
    meta = _meta_args(doc["metadata"])
    return [
        now,
        keys.base,
        doc["id"],
        schema.current,
        ttl_ms,
        "1" if replace else "0",
        nonce,
        prefix_of(doc["owner"]),
        prefix_of(doc["agent"]),
        doc["status"] + ":",
        json_text(doc["expires_at"]),
        updated,
        len(fields) // 2,
        len(meta) // 2,
        len(items),
        "" if expected_version is None else expected_version,
        len(items.keys),
        *fields,
        *meta,
        *(data for _, data in items),
        *(part for key, seq in items.keys for part in (key, seq - items[0][0], seq)),
    ]


def commit_args(
    keys: Keys,
    session_id: str,
    expected_version: int | None,
    *,
    mode: str,
    changes: _core.Doc,
    items: _core.UnnumberedItems,
    lease: Lease | None,
    now: str,
    ttl_ms: int,
    nonce: str,
    after: int | None = None,
) -> list[Any]:
    fields: list[str | bytes] = []
    for name, value in changes.items():
        fields += (name, json_text(value))
    meta = _meta_args(changes["metadata"]) if "metadata" in changes else None
    return [
        now,
        keys.base,
        session_id,
        "" if expected_version is None else expected_version,
        schema.current,
        "" if lease is None else json_text(lease.token),
        ttl_ms,
        nonce,
        mode,
        len(fields) // 2,
        -1 if meta is None else len(meta) // 2,
        len(items),
        prefix_of(changes["owner"]) if "owner" in changes else "*",
        prefix_of(changes["agent"]) if "agent" in changes else "*",
        changes["status"] + ":" if "status" in changes else "*",
        json_text(changes["expires_at"]) if "expires_at" in changes else "*",
        "1" if _core.needs_runtime_block(changes) else "0",
        "" if after is None else after,
        len(items.keys),
        *fields,
        *(meta or ()),
        *_item_args(items),
        *(part for pair in items.keys for part in pair),
    ]


def upgrade_args(
    keys: Keys,
    doc: _core.Doc,
    stored_version: int,
    items: list[HistoryItem] | None,
    *,
    now: str,
    ttl_ms: int,
) -> list[Any]:
    """Write back ``doc`` (already upgraded) and, if given, its upgraded items."""
    fields: list[str | bytes] = []
    for name in _UPGRADE_FIELDS:
        fields += (name, json_text(doc[name]))
    meta = _meta_args(doc["metadata"])
    encoded = [] if items is None else [_core.encode_item(item) for item in items]
    return [
        now,
        keys.base,
        doc["id"],
        doc["version"],
        stored_version,
        ttl_ms,
        len(fields) // 2,
        len(meta) // 2,
        -1 if items is None else len(encoded),
        prefix_of(doc["owner"]),
        prefix_of(doc["agent"]),
        str(doc["status"]) + ":",
        *fields,
        *meta,
        *encoded,
    ]


def lease_ttl_micros(ttl: float | timedelta) -> int:
    return min(_core.ttl_micros(ttl), MAX_LEASE_MICROS)


# --- replies -----------------------------------------------------------------------------------


def _status(reply: Any) -> str:
    if isinstance(reply, (bytes, str)):
        return _text(reply)
    if isinstance(reply, list) and reply:
        return _text(reply[0])
    raise StoreError(f"the Redis store's script gave an unexpected reply: {reply!r}")


def _unexpected(reply: Any) -> NoReturn:
    raise StoreError(f"the Redis store's script gave an unexpected reply: {reply!r}")


def _raise_newer(session_id: str, found: bytes | str) -> NoReturn:
    _core.check_writable(session_id, {"schema_version": int(found)})
    _unexpected(found)


_OTHER_TOKEN = object()


def _raise_lease(session_id: str, lease: Lease | None, reply: list[Any]) -> NoReturn:
    """Raise what _core's lease rules say about the lease state the script reported."""
    _, owner, state, expires, now = reply
    token: object = None
    if _text(state) == "match" and lease is not None:
        token = lease.token
    elif _text(state) == "other":
        token = _OTHER_TOKEN
    doc = {
        "id": session_id,
        "lease_owner": _json.loads(owner),
        "lease_token": token,
        "lease_expires_at": _json.loads(expires),
    }
    _core.check_write_lease(doc, lease, int(now))
    _unexpected(reply)


def decode_header(session_id: str, raw: bytes | str) -> _core.Doc:
    try:
        doc = _json.loads(raw)
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, f"a header field is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), int):
        raise CorruptSession(session_id, "its header is not a tether session document")
    return doc


def loaded_session(session_id: str, reply: Any) -> Session:
    if reply is None:
        raise SessionNotFound(session_id)
    header, items = reply
    return _core.readable_session(
        decode_header(session_id, header), _core.decode_items(session_id, items)
    )


TRANSACTION_MIN_ITEMS = 32
"""``load(last=N)`` for smaller N goes through the load script (cheaper for a few items)."""


def use_transaction(last: int | None, after: int | None, limit: int | None = None) -> bool:
    """Whether a load reads its window with MULTI/EXEC rather than the load script.

    Both are one round trip and atomic. The transaction's LRANGE reaches the client without
    passing through Lua, which converts every item to a Lua string and back: a whole history of
    1,000 items of 1 KB loads in 1.5 ms instead of 2.3 ms (5,000: 8.6 against 14 ms), as fast as
    a bare LRANGE. It costs ~30 µs more on tiny reads (redis-py queues and parses MULTI, QUEUED,
    EXEC), and cannot serve ``after=`` (the first index depends on the header), nor ``last``
    with a ``limit`` below it (the page's last index depends on the history's length).
    """
    if after is not None:
        return False
    if last is None:
        return limit is None or limit >= TRANSACTION_MIN_ITEMS
    return last >= TRANSACTION_MIN_ITEMS and (limit is None or limit >= last)


def transaction_range(last: int | None, limit: int | None) -> tuple[int, int]:
    """The LRANGE bounds of a load the transaction serves (see :func:`use_transaction`)."""
    if last is not None:
        return -last, -1  # a limit of at least `last` cuts nothing
    return 0, -1 if limit is None else limit - 1


def decode_fields(session_id: str, values: Sequence[bytes | str | None]) -> _core.Doc | None:
    """A header document from an HMGET of HEADER_FIELDS; None if the session is missing."""
    if values[HEADER_FIELDS.index("version")] is None:
        return None
    try:
        doc = {
            name: None if value is None else _json.loads(value)
            for name, value in zip(HEADER_FIELDS, values, strict=True)
        }
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, f"a header field is not valid JSON ({exc})") from exc
    if not isinstance(doc.get("schema_version"), int):
        raise CorruptSession(session_id, "its header is not a tether session document")
    return doc


def transaction_session(session_id: str, now: int | None, replies: Sequence[Any]) -> Session:
    """The session a load transaction read: [HMGET, LRANGE, TIME (if no injected clock)]."""
    doc = decode_fields(session_id, replies[0])
    if now is None:
        seconds, micros = replies[2]
        now = int(seconds) * 1_000_000 + int(micros)
    if doc is None or not _core.is_live(doc, now):
        raise SessionNotFound(session_id)
    return _core.readable_session(doc, _core.decode_items(session_id, replies[1]))


def loaded_raw(session_id: str, reply: Any) -> tuple[_core.Doc, list[HistoryItem]] | None:
    """Header and items as stored (not upgraded), for the upgrade write-back."""
    if reply is None:
        return None
    header, items = reply
    return decode_header(session_id, header), _core.decode_items(session_id, items)


def keyed_found(session_id: str, reply: Any) -> dict[str, StoredItem]:
    """What ``items_by_key`` returns for the script's reply."""
    if reply is None:
        raise SessionNotFound(session_id)
    status = _status(reply)
    if status == "NEWER":
        _raise_newer(session_id, reply[1])
    if status != "OK":
        _unexpected(reply)
    return _core.keyed_items(session_id, reply[1])


def created_session(doc: _core.Doc, items: Sequence[EncodedItem], reply: Any) -> Session:
    session_id = doc["id"]
    status = _status(reply)
    if status == "EXISTS":
        raise SessionExists(session_id, int(reply[1]))
    if status == "NEWER":
        _raise_newer(session_id, reply[1])
    if status != "OK":
        _unexpected(reply)
    now, stamp = int(reply[1]), _text(reply[2])
    doc.update(created_at=now, updated_at=now, last_seq=len(items), history_len=len(items))
    history: list[HistoryItem] = []
    for seq, (needs_stamp, data) in enumerate(items, start=1):
        item = _json.loads(data)
        item["seq"] = seq
        if needs_stamp:
            item["timestamp"] = stamp
        history.append(item)
    return _core.make_session(doc, history)


def restored(session_id: str, reply: Any, expected_version: int | None = None) -> None:
    status = _status(reply)
    if status == "OK":
        return
    if status == "EXISTS":
        raise SessionExists(session_id, int(reply[1]))
    if status == "MISSING":
        raise SessionNotFound(session_id)
    if status == "CONFLICT":
        raise ConflictError(session_id, expected_version, int(reply[1]))
    if status == "NEWER":
        _raise_newer(session_id, reply[1])
    _unexpected(reply)


def written_version(
    session_id: str, expected_version: int | None, lease: Lease | None, reply: Any
) -> int | None:
    """The new version of a commit, or None if the session must be upgraded first."""
    status = _status(reply)
    if status == "OK":
        return int(reply[1])
    if status == "DUPKEY":
        raise DuplicateItemKey(session_id, _text(reply[1]))
    if status == "RANGE":
        first, last = int(reply[1]), int(reply[2])
        raise InvalidRequest(
            f"cannot replace the items of {session_id!r} after that seq: its history holds "
            f"seqs {first}..{last}, so after must be from {first - 1} to {last}"
        )
    if status == "MISSING":
        raise SessionNotFound(session_id)
    if status == "NEWER":
        _raise_newer(session_id, reply[1])
    if status == "LEASE":
        _raise_lease(session_id, lease, reply)
    if status == "CONFLICT":
        raise ConflictError(session_id, expected_version, int(reply[1]))
    if status == "UPGRADE":
        return None
    _unexpected(reply)


def deleted(session_id: str, expected_version: int | None, lease: Lease | None, reply: Any) -> bool:
    status = _status(reply)
    if status == "OK":
        return True
    if status == "LEASE":
        _raise_lease(session_id, lease, reply)
    if status == "MISSING":
        if expected_version is not None:
            raise SessionNotFound(session_id)
        return False
    if status == "NEWER":
        _raise_newer(session_id, reply[1])
    if status == "CONFLICT":
        raise ConflictError(session_id, expected_version, int(reply[1]))
    _unexpected(reply)


def claimed(session_id: str, owner: str, token: str, reply: Any) -> Lease:
    status = _status(reply)
    if status == "OK":
        return Lease(
            session_id=session_id,
            owner=owner,
            token=token,
            fence=int(reply[1]),
            expires_at=from_micros(int(reply[2])),
        )
    if status == "MISSING":
        raise SessionNotFound(session_id)
    if status == "NEWER":
        _raise_newer(session_id, reply[1])
    if status == "CLAIMED":
        raise AlreadyClaimed(session_id, _json.loads(reply[1]), from_micros(int(reply[2])))
    _unexpected(reply)


def lease_updated(lease: Lease, reply: Any) -> Lease:
    status = _status(reply)
    if status == "OK":
        if len(reply) < 4:
            return lease  # a release (its result is not used)
        return Lease(
            session_id=lease.session_id,
            owner=_json.loads(reply[1]),
            token=lease.token,
            fence=int(reply[2]),
            expires_at=from_micros(int(reply[3])),
        )
    if status == "GONE":
        raise LeaseLost(lease.session_id, "the session no longer exists")
    if status == "LEASE":
        _raise_lease(lease.session_id, lease, reply)
    _unexpected(reply)


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListPlan:
    """Which index a listing reads, between which lex bounds, and what else must match."""

    which: int
    prefix: str
    upper: str
    lower: str
    filters: tuple[str, ...]

    def args(self, upper: str, want: int, budget: int, now: str, base: str) -> list[Any]:
        return [
            now,
            base,
            self.which,
            self.prefix,
            upper,
            self.lower,
            want,
            budget,
            schema.current,
            *self.filters,
        ]


def list_plan(query: _core.ListQuery) -> ListPlan | None:
    """The plan for ``query``, or None when no session can match (empty time range)."""
    if query.owner is not None:
        which, prefix = 1, prefix_of(query.owner)
    elif query.agent is not None:
        which, prefix = 2, prefix_of(query.agent)
    elif query.statuses is not None and len(query.statuses) == 1:
        which, prefix = 3, next(iter(query.statuses)) + ":"
    else:
        which, prefix = 0, ""
    upper = prefix + ";"  # ';' sorts right after ':' and every digit: the end of this prefix
    if query.updated_before is not None:
        if query.updated_before <= 0:
            return None
        if query.updated_before <= MAX_STAMP:
            upper = min(upper, prefix + _pad(query.updated_before))
    if query.cursor is not None:
        stamp, last_id = query.cursor
        if stamp < 0:
            return None
        if stamp <= MAX_STAMP:
            upper = min(upper, prefix + _pad(stamp) + ":" + last_id)
    lower = "[" + prefix
    if query.updated_after is not None and query.updated_after >= 0:
        if query.updated_after >= MAX_STAMP:
            return None
        lower = "(" + prefix + _pad(query.updated_after) + ";"
    statuses = (
        "*"
        if query.statuses is None
        else "|" + "|".join(status + ":" for status in sorted(query.statuses)) + "|"
    )
    filters = [
        "*" if query.owner is None else prefix_of(query.owner),
        "*" if query.agent is None else prefix_of(query.agent),
        statuses,
        str(len(query.metadata)),
    ]
    for key, value in query.metadata:
        filters += (key, value)
    return ListPlan(which, prefix, "(" + upper, lower, tuple(filters))


def list_rows(reply: Any) -> tuple[list[tuple[str, bytes | str]], str]:
    """(member, header JSON) pairs found, and where to resume ("" when done)."""
    flat, resume = reply
    rows = [(_text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]
    return rows, _text(resume)


def purged(reply: Any) -> tuple[int, str]:
    removed, resume = reply
    return int(removed), _text(resume)


def list_page(rows: list[tuple[str, bytes | str]], limit: int, prefix: str) -> Page:
    headers: list[SessionHeader] = []
    cut = len(prefix)
    for member, raw in rows[:limit]:
        session_id = member[cut + 17 :]
        try:
            doc = decode_header(session_id, raw)
            headers.append(_core.listed_header(doc))
        except TetherError as exc:  # one bad session must not hide the others
            log.warning("skipping session %r in listing: %s", session_id, exc)
    next_cursor = None
    if len(rows) > limit:
        member = rows[limit - 1][0]
        next_cursor = _core.encode_cursor(int(member[cut : cut + 16]), member[cut + 17 :])
    return Page(sessions=headers, next_cursor=next_cursor)
