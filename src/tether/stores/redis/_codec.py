"""The Redis store's arguments and replies (no I/O): each script's arguments built from checked
values, and its reply decoded into a result or an error.

Numbers inside the scripts: Lua 5.1 numbers are doubles, exact for integers below 2**53, which
holds microsecond timestamps until the year 2255. The scripts never let Lua print a number with
``tostring`` (14 significant digits); they format with ``%d``. They never decode or re-encode
user JSON either (Redis's cjson would round big integers and turn ``{}`` into ``[]``): every
header field is stored as its own JSON text, and the scripts only compare, copy and concatenate
those texts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from ... import _core, _json
from ..._time import Clock, from_micros, to_micros
from ...errors import (
    AlreadyClaimed,
    ConflictError,
    CorruptSession,
    DuplicateItemKey,
    InvalidRequest,
    LeaseLost,
    SessionExists,
    SessionNotFound,
    StoreError,
)
from ...models import HistoryItem, KeyedItem, Lease, Session, StoredItem
from ...schema import schema
from .._writes import Write
from . import _scripts as lua
from ._keys import MAX_STAMP, Keys, prefix_of
from ._scripts import HEADER_FIELDS

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


def now_arg(clock: Clock | None) -> str:
    """What the scripts take for "now": an injected clock's µs, or "" for Redis's own TIME."""
    return "" if clock is None else str(to_micros(clock()))


def new_nonce() -> str:
    """Marks one write, so a retry after a lost reply sees it was applied (see the scripts).
    ``os.urandom`` is what ``secrets.token_hex`` reads, without its two Python calls around
    it (every commit makes one)."""
    return os.urandom(8).hex()


def new_token() -> str:
    """A lease token: secret, and unique, so it also marks its claim as applied."""
    return os.urandom(16).hex()


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- arguments ---------------------------------------------------------------------------------


def encode_items(items: Iterable[Mapping[str, Any] | KeyedItem]) -> _core.UnnumberedItems:
    """Check and encode new history items before any I/O; the script numbers and stamps them."""
    return _core.encode_unnumbered_items(items)


def _item_args(items: _core.UnnumberedItems) -> list[str | bytes]:
    """(needs timestamp, the row's JSON without its closing brace) pairs: the script closes
    each row after its seq and timestamp with one concatenation (``build_items``)."""
    out: list[str | bytes] = []
    for needs_stamp, data in items:
        out += ("1" if needs_stamp else "0", data[:-1])
    return out


def _meta_args(metadata: Mapping[str, Any]) -> list[str]:
    return [part for pair in _core.metadata_index(metadata) for part in pair]


def _field_args(doc: Mapping[str, Any], names: Iterable[str]) -> list[str | bytes]:
    fields: list[str | bytes] = []
    for name in names:
        fields += (name, _json.dumps(doc[name]))
    return fields


def _new_session_args(
    keys: Keys, doc: _core.Doc, names: Iterable[str], *, now: str, ttl_ms: int, nonce: str
) -> tuple[dict[str, Any], list[str | bytes]]:
    """What create, fork and restore pass alike (``lua._NewSessionArgs``) and the head of their
    tail: the header fields ``names`` of ``doc``, then its metadata pairs."""
    fields = _field_args(doc, names)
    meta = _meta_args(doc["metadata"])
    shared = {
        "now": now,
        "base": keys.base,
        "session_id": doc["id"],
        "schema_version": schema.current,
        "store_ttl_ms": ttl_ms,
        "nonce": nonce,
        "owner_prefix": prefix_of(doc["owner"]),
        "agent_prefix": prefix_of(doc["agent"]),
        "status_prefix": doc["status"] + ":",
        "expires_at": _json.dumps(doc["expires_at"]),
        "n_fields": len(fields) // 2,
        "n_meta": len(meta) // 2,
    }
    return shared, [*fields, *meta]


def create_args(
    keys: Keys,
    doc: _core.Doc,
    items: _core.UnnumberedItems,
    *,
    now: str,
    ttl_ms: int,
    nonce: str,
) -> lua.CreateArgs:
    shared, head = _new_session_args(keys, doc, _CREATE_FIELDS, now=now, ttl_ms=ttl_ms, nonce=nonce)
    return lua.CreateArgs(**shared, n_items=len(items), tail=[*head, *_item_args(items)])


def fork_args(
    keys: Keys, doc: _core.Doc, parent_id: str, at: int, *, now: str, ttl_ms: int, nonce: str
) -> lua.ForkArgs:
    """Arguments of the fork script: ``doc`` the child's new header document."""
    shared, head = _new_session_args(keys, doc, _CREATE_FIELDS, now=now, ttl_ms=ttl_ms, nonce=nonce)
    return lua.ForkArgs(**shared, parent_id=parent_id, at=at, tail=head)


def forked(doc: _core.Doc, parent_id: str, at: int, reply: Any) -> int | None:
    """The fork script's answer: the child's creation time (µs), or None when the parent must
    be copied instead; raises what refused the fork."""
    status = _status(reply)
    if status == "OK":
        return int(reply[1])
    if status == "COPY":
        return None
    if status == "MISSING":
        raise SessionNotFound(parent_id)
    if status == "EXISTS":
        raise SessionExists(doc["id"], int(reply[1]))
    if status == "NEWER":
        _raise_newer(parent_id if len(reply) < 3 else doc["id"], reply[1])
    if status == "RANGE":  # the parent's first and last seq: the core says what was wrong
        first, last = int(reply[1]), int(reply[2])
        _core.items_kept(
            {"id": parent_id, "last_seq": last, "history_len": last - first + 1}, at, "fork"
        )
    raise StoreError(f"the Redis store's script gave an unexpected reply: {reply!r}")


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
    shared, head = _new_session_args(
        keys, doc, (*HEADER_FIELDS, "lease_token"), now=now, ttl_ms=ttl_ms, nonce=nonce
    )
    return lua.RestoreArgs(
        **shared,
        replace=replace,
        updated_at=updated,
        n_items=len(items),
        expected_version=expected_version,
        n_keys=len(items.keys),
        tail=[
            *head,
            *(data for _, data in items),
            *(part for key, seq in items.keys for part in (key, seq - items[0][0], seq)),
        ],
    )


def commit_args(
    keys: Keys,
    write: Write,
    items: _core.UnnumberedItems,
    *,
    mode: str,
    now: str,
    ttl_ms: int,
    nonce: str,
    after: int | None = None,
) -> lua.CommitArgs:
    """Arguments of the commit script in ``mode`` for ``write``, its items encoded as ``items``."""
    changes, lease = write.changes, write.lease
    fields = _field_args(changes, changes)
    meta = _meta_args(changes["metadata"]) if "metadata" in changes else None
    return lua.CommitArgs(
        now=now,
        base=keys.base,
        session_id=write.session_id,
        schema_version=schema.current,
        expected_version=write.expected_version,
        lease_token=None if lease is None else _json.dumps(lease.token),
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
        expires_at=_json.dumps(changes["expires_at"]) if "expires_at" in changes else "*",
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


def lease_ttl_micros(ttl: int) -> int:
    """A lease's length in µs (checked by the base class), cut to what Lua holds exactly."""
    return min(ttl, MAX_LEASE_MICROS)


# --- replies -----------------------------------------------------------------------------------


def _status(reply: Any) -> str:
    if isinstance(reply, (bytes, str)):
        return as_text(reply)
    if isinstance(reply, list) and reply:
        return as_text(reply[0])
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
    if as_text(state) == "match" and lease is not None:
        token = lease.token
    elif as_text(state) == "other":
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


TRANSACTION_MIN_ITEMS = 64
"""Loads of fewer items go through the load script alone (see :func:`use_transaction`)."""

KNOWN_LENGTHS = 4096
"""Sessions whose last seen history length a store remembers (see :func:`use_transaction`)."""


def use_transaction(
    last: int | None, after: int | None, limit: int | None = None, known: int | None = None
) -> bool:
    """Whether a load is a MULTI/EXEC of the load script (the header) and an LRANGE (the
    items) rather than the load script alone.

    Both are one round trip and atomic. Items that pass through Lua cost Redis ~10 times what
    the bare LRANGE costs (each becomes a Lua string, then a reply again: 1,000 items of ~600
    bytes, 3.6 ms against 0.3 ms of server time), while MULTI, QUEUED and EXEC cost redis-py
    more to pack and parse than a few items cost Lua. So a read of fewer than
    TRANSACTION_MIN_ITEMS items is the script alone: ``last`` or ``limit`` under it, or a
    session whose history was shorter than that when this store last read or created it
    (``known``; a stale figure costs only time, never correctness). The transaction cannot
    serve ``after=`` (the first index depends on the header), nor ``last`` with a ``limit``
    below it (the page's last index depends on the history's length).
    """
    if after is not None or (last is not None and limit is not None and limit < last):
        return False
    fewest = min((n for n in (last, limit, known) if n is not None), default=None)
    return fewest is None or fewest >= TRANSACTION_MIN_ITEMS


def transaction_range(last: int | None, limit: int | None) -> tuple[int, int]:
    """The LRANGE bounds of a load the transaction serves (see :func:`use_transaction`)."""
    if last is not None:
        return -last, -1  # a limit of at least `last` cuts nothing
    return 0, -1 if limit is None else limit - 1


def transaction_session(session_id: str, replies: Sequence[Any]) -> Session:
    """The session a load transaction read: [the load script's reply (``listed``), LRANGE].
    A session reading items through a share got its whole reply from the script."""
    header, items = replies
    if header is None or isinstance(header, list):
        return loaded_session(session_id, header)
    return _core.readable_session(
        decode_header(session_id, header), _core.decode_items(session_id, items)
    )


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
    now, stamp = int(reply[1]), as_text(reply[2])
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
        raise DuplicateItemKey(session_id, as_text(reply[1]))
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


class Written(NamedTuple):
    """What the commit script wrote (a :class:`~tether.stores._writes.Added`): the new
    version, the script's reply and the items as sent; the stamp is built only when asked."""

    version: int
    reply: Any
    items: _core.UnnumberedItems

    def stamp(self) -> _core.CommitStamp:
        return commit_stamp(self.version, self.reply, self.items)


def commit_stamp(version: int, reply: Any, items: _core.UnnumberedItems) -> _core.CommitStamp:
    """What the commit script stamped, from its OK reply (the new version, the time in µs, the
    new last_seq, the lease fields' JSON texts). The new items' rows are spliced here as the
    script's ``build_items`` spliced them (``seq`` and, if the item had none, the commit's
    timestamp after the item's own keys), so they are the stored bytes without encoding the
    items again. A retried call whose write was already applied reports the version alone."""
    if len(reply) < 7:
        return _core.CommitStamp(version)
    lease = (_json.loads(reply[4]), _json.loads(reply[5]), _json.loads(reply[6]))
    return _core.spliced_stamp(
        version, int(reply[2]), int(reply[3]), lease, items, splice=written_row
    )


def written_row(seq: int, stamp: str | None, data: bytes) -> bytes:
    """A new item's stored row: ``data`` (from encode_items, never "{}") with ``seq`` and the
    commit's timestamp (None: the item has its own) after its own keys."""
    if stamp is None:
        return data[:-1] + b',"seq":%d}' % seq
    return data[:-1] + b',"seq":%d,"timestamp":"%s"}' % (seq, stamp.encode())


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
        return _core.granted_lease(session_id, owner, token, reply[1], reply[2])
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
