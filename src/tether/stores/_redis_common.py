"""The parts of the Redis store that do no I/O, shared by its async and sync sides.

Key names, argument encoding and reply decoding live here (the Lua scripts are files in
``redis_lua/``, described in :mod:`tether.stores._redis_scripts`), so that
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
from . import _redis_scripts as lua
from ._redis_scripts import HEADER_FIELDS

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
MAX_STAMP = 10**16 - 1
"""The largest timestamp (µs) an index entry can hold: 16 digits, past the year 2286."""
MAX_LEASE_MICROS = 2**52
"""Longer leases are cut to ~142 years so that now + ttl stays exact inside Lua."""

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
        """A write script's KEYS (``_redis_scripts.WRITE_KEYS``)."""
        return [*self.index, *self.session(session_id), *self.item_keys(session_id)]

    def for_script(self, names: Iterable[str], session_id: str | None = None) -> list[str]:
        """The KEYS of a script, by the names it gives them (``LuaScript.keys``)."""
        named = dict(zip(lua.INDEX_KEYS, self.index, strict=True))
        if session_id is not None:
            session = (*self.session(session_id), *self.item_keys(session_id))
            named.update(zip(lua.SESSION_KEYS, session, strict=True))
        return [named[name] for name in names]


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


# --- arguments ---------------------------------------------------------------------------------


def encode_items(items: Iterable[Mapping[str, Any] | KeyedItem]) -> _core.UnnumberedItems:
    """Check and encode new history items before any I/O; the script numbers and stamps them."""
    return _core.encode_unnumbered_items(items)


def _item_args(items: _core.UnnumberedItems) -> list[str | bytes]:
    out: list[str | bytes] = []
    for needs_stamp, data in items:
        out += ("1" if needs_stamp else "0", data)
    return out


def _meta_args(metadata: Mapping[str, Any]) -> list[str]:
    return [part for pair in _core.metadata_index(metadata) for part in pair]


def _field_args(doc: Mapping[str, Any], names: Iterable[str]) -> list[str | bytes]:
    fields: list[str | bytes] = []
    for name in names:
        fields += (name, json_text(doc[name]))
    return fields


def create_args(
    keys: Keys,
    doc: _core.Doc,
    items: _core.UnnumberedItems,
    *,
    now: str,
    ttl_ms: int,
    nonce: str,
) -> lua.CreateArgs:
    fields = _field_args(doc, _CREATE_FIELDS)
    meta = _meta_args(doc["metadata"])
    return lua.CreateArgs(
        now=now,
        base=keys.base,
        session_id=doc["id"],
        schema_version=schema.current,
        store_ttl_ms=ttl_ms,
        nonce=nonce,
        owner_prefix=prefix_of(doc["owner"]),
        agent_prefix=prefix_of(doc["agent"]),
        status_prefix=doc["status"] + ":",
        expires_at=json_text(doc["expires_at"]),
        n_fields=len(fields) // 2,
        n_meta=len(meta) // 2,
        n_items=len(items),
        tail=[*fields, *meta, *_item_args(items)],
    )


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
) -> lua.RestoreArgs:
    """Arguments of the restore script: ``doc`` and ``items`` from :func:`_core.restore_doc`."""
    updated = doc["updated_at"]
    if not 0 <= updated <= MAX_STAMP:
        raise InvalidRequest(
            f"session {doc['id']!r}: updated_at must lie between 1970 and 2286 to be stored "
            "in the Redis store's indexes"
        )
    fields = _field_args(doc, (*HEADER_FIELDS, "lease_token"))
    meta = _meta_args(doc["metadata"])
    return lua.RestoreArgs(
        now=now,
        base=keys.base,
        session_id=doc["id"],
        schema_version=schema.current,
        store_ttl_ms=ttl_ms,
        replace=replace,
        nonce=nonce,
        owner_prefix=prefix_of(doc["owner"]),
        agent_prefix=prefix_of(doc["agent"]),
        status_prefix=doc["status"] + ":",
        expires_at=json_text(doc["expires_at"]),
        updated_at=updated,
        n_fields=len(fields) // 2,
        n_meta=len(meta) // 2,
        n_items=len(items),
        expected_version=expected_version,
        n_keys=len(items.keys),
        tail=[
            *fields,
            *meta,
            *(data for _, data in items),
            *(part for key, seq in items.keys for part in (key, seq - items[0][0], seq)),
        ],
    )


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
) -> lua.CommitArgs:
    fields = _field_args(changes, changes)
    meta = _meta_args(changes["metadata"]) if "metadata" in changes else None
    return lua.CommitArgs(
        now=now,
        base=keys.base,
        session_id=session_id,
        schema_version=schema.current,
        expected_version=expected_version,
        lease_token=None if lease is None else json_text(lease.token),
        store_ttl_ms=ttl_ms,
        nonce=nonce,
        mode=mode,
        n_changes=len(fields) // 2,
        n_meta=-1 if meta is None else len(meta) // 2,
        n_items=len(items),
        # "*": unchanged (an owner or agent of None has the prefix "")
        owner_prefix=prefix_of(changes["owner"]) if "owner" in changes else "*",
        agent_prefix=prefix_of(changes["agent"]) if "agent" in changes else "*",
        status_prefix=changes["status"] + ":" if "status" in changes else "*",
        expires_at=json_text(changes["expires_at"]) if "expires_at" in changes else "*",
        keep_runtime_block=_core.needs_runtime_block(changes),
        after=after,
        n_keys=len(items.keys),
        tail=[
            *fields,
            *(meta or ()),
            *_item_args(items),
            *(part for pair in items.keys for part in pair),
        ],
    )


def upgrade_args(
    keys: Keys,
    doc: _core.Doc,
    stored_version: int,
    items: list[HistoryItem] | None,
    *,
    now: str,
    ttl_ms: int,
) -> lua.UpgradeArgs:
    """Write back ``doc`` (already upgraded) and, if given, its upgraded items."""
    fields = _field_args(doc, _UPGRADE_FIELDS)
    meta = _meta_args(doc["metadata"])
    encoded = [] if items is None else [_core.encode_item(item) for item in items]
    return lua.UpgradeArgs(
        now=now,
        base=keys.base,
        session_id=doc["id"],
        version=doc["version"],
        stored_schema_version=stored_version,
        store_ttl_ms=ttl_ms,
        n_fields=len(fields) // 2,
        n_meta=len(meta) // 2,
        n_items=-1 if items is None else len(encoded),
        owner_prefix=prefix_of(doc["owner"]),
        agent_prefix=prefix_of(doc["agent"]),
        status_prefix=str(doc["status"]) + ":",
        tail=[*fields, *meta, *encoded],
    )


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


def created_session(doc: _core.Doc, items: _core.UnnumberedItems, reply: Any) -> Session:
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
    want_owner: str
    want_agent: str
    want_statuses: str
    metadata: tuple[tuple[str, str], ...]

    def args(self, upper: str, want: int, budget: int, now: str, base: str) -> lua.ListArgs:
        return lua.ListArgs(
            now=now,
            base=base,
            schema_version=schema.current,
            which=self.which,
            prefix=self.prefix,
            upper=upper,
            lower=self.lower,
            want=want,
            budget=budget,
            want_owner=self.want_owner,
            want_agent=self.want_agent,
            want_statuses=self.want_statuses,
            n_meta=len(self.metadata),
            tail=[part for pair in self.metadata for part in pair],
        )


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
    return ListPlan(
        which,
        prefix,
        "(" + upper,
        lower,
        want_owner="*" if query.owner is None else prefix_of(query.owner),
        want_agent="*" if query.agent is None else prefix_of(query.agent),
        want_statuses=statuses,
        metadata=tuple(query.metadata),
    )


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
