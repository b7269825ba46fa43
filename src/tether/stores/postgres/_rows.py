"""The PostgreSQL store's rules on values and rows (no I/O): parameters of each write, rows
decoded, and why a guarded statement that matched nothing did so (the ``judge_*`` functions)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg

from ... import _core, _json
from ..._core.leases import check_write
from ..._time import from_micros
from ...errors import (
    ConflictError,
    InvalidRequest,
    InvalidSessionData,
    LeaseLost,
    SessionExists,
    SessionNotFound,
    StoreError,
)
from ...models import KeyedItem, Lease
from ...schema import schema
from . import _arrays

# --- values --------------------------------------------------------------------------------------


def check_text(name: str, value: str | None, error: type[InvalidRequest]) -> None:
    """PostgreSQL text cannot hold NUL or unpaired surrogates: refuse them before any I/O."""
    if value is None:
        return
    if "\x00" in value:
        raise error(f"{name} contains a NUL character, which PostgreSQL text cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"{name} is not valid Unicode text ({exc})") from exc


def cannot_merge_block(params: Mapping[str, Any], exc: StoreError) -> bool:
    """Whether a commit failed only because the statement could not read the stored state to
    keep its runtime block: PostgreSQL's json operators decode strings, and refuse "\\u0000"
    (SQLSTATE 22P05). Nothing was written; the store then merges the block client-side."""
    return bool(params.get("keep_block")) and isinstance(
        exc.__cause__, psycopg.errors.UntranslatableCharacter
    )


def encode_new_items(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> tuple[_arrays.Texts, _arrays.Flags, _arrays.OptionalTexts]:
    """Check and encode items to append: their JSON texts, which need a timestamp, and their
    keys (None for an item without one), as the statement's array parameters (``_arrays``).

    The statement that stores them puts ``seq`` (and a missing timestamp) in front of each
    one: only it knows the session's ``last_seq`` and the server's time. The texts are never
    "{}" (a row always has its "item"), so the statement can splice after the "{".
    """
    encoded = _core.encode_unnumbered_items(items)
    keys = _arrays.OptionalTexts([None] * len(encoded))
    for key, offset in encoded.keys:
        keys[offset] = key
    texts = _arrays.Texts([data.decode() for _, data in encoded])
    return texts, _arrays.Flags([stamp for stamp, _ in encoded]), keys


def write_params(
    session_id: str,
    expected_version: int | None,
    lease: Lease | None,
    items: Iterable[Mapping[str, Any] | KeyedItem],
    now: datetime | None,
) -> dict[str, Any]:
    """The parameters every versioned write (commit, replace_history, replace_tail, a blind
    append with ``expected_version`` None) starts from: the session, the version and lease it
    expects, and its new items (see encode_new_items)."""
    texts, stamps, keys = encode_new_items(items)
    return {
        "id": session_id,
        "version": expected_version,
        "now": now,
        "schema": schema.current,
        "token": None if lease is None else lease.token,
        "n": len(texts),
        "items": texts,
        "stamps": stamps,
        "item_keys": keys,
    }


def header_write_params(
    session_id: str,
    expected_version: int | None,
    lease: Lease | None,
    items: Iterable[Mapping[str, Any] | KeyedItem],
    *,
    changes: _core.Doc,
    now: datetime | None,
) -> dict[str, Any]:
    """A write's parameters (write_params) with its header changes (changes_params), once an
    owner or agent PostgreSQL text cannot hold is refused (before the items are encoded)."""
    for name in ("owner", "agent"):
        check_text(name, changes.get(name), InvalidRequest)
    params = write_params(session_id, expected_version, lease, items, now)
    params.update(changes_params(changes))
    return params


class CommitRow(NamedTuple):
    """What the commit statement wrote (a :class:`~tether.stores._writes.Added`): the
    parameters it ran with and the row it returned."""

    params: dict[str, Any]
    row: Sequence[Any]

    @property
    def version(self) -> int:
        return int(self.row[0])

    def stamp(self) -> _core.CommitStamp:
        return commit_stamp(self.params, self.row)


def commit_stamp(params: Mapping[str, Any], row: Sequence[Any]) -> _core.CommitStamp:
    """What the commit statement (``_sql.COMMIT``, run with ``params``) stamped, from the row
    it returned: the new version and last_seq, updated_at and the lease fields in µs, so no
    read follows. The new items' rows are spliced here as the statement spliced them
    (``item_json`` in ``_sql_parts.py``: ``seq`` and, if the item had none, the commit's
    timestamp in front of the text the store sent), so they are the stored bytes without
    encoding the items again."""
    version, last_seq, updated_at, lease_owner, lease_fence, lease_expires_at = row
    lease = (lease_owner, lease_fence, lease_expires_at)
    items = list(zip(params["stamps"], params["items"], strict=True))
    return _core.spliced_stamp(version, updated_at, last_seq, lease, items, splice=written_row)


def written_row(seq: int, stamp: str | None, text: str) -> bytes:
    """A new item's stored row: ``text`` (from encode_new_items, never "{}") with ``seq`` and
    the commit's timestamp (None: the item has its own) in front of its own keys."""
    head = f'{{"seq":{seq}' if stamp is None else f'{{"seq":{seq},"timestamp":"{stamp}"'
    return f"{head},{text[1:]}".encode()


def changes_params(changes: _core.Doc) -> dict[str, Any]:
    """The ``set_<field>`` / ``<field>`` parameters of a write's header changes."""
    params: dict[str, Any] = {}
    for name in sorted(_core.CHANGEABLE_FIELDS):
        given = name in changes
        value = changes.get(name)
        if given and name in _core.JSON_FIELDS:
            value = _json.dumps_text(value, what=name)
        elif name == "expires_at":
            value = as_time(value)
        params[f"set_{name}"] = given
        params[name] = value
    # replacing state keeps the runtime's block: the statement merges it (see COMMIT)
    params["keep_block"] = _core.needs_runtime_block(changes)
    params.update(metadata_rows(changes.get("metadata") or {}))
    return params


def is_duplicate_key(exc: StoreError) -> bool:
    """Whether a write failed on tether_item_keys' primary key (a key the session holds)."""
    cause = exc.__cause__
    return isinstance(cause, psycopg.errors.UniqueViolation) and (
        cause.diag.constraint_name == "tether_item_keys_pkey"
    )


def judge_tail(
    session_id: str, found: Found, expected_version: int | None, lease: Lease | None, after: int
) -> None:
    """replace_tail: the checks of a write, then ``after`` within the history."""
    judge_write(session_id, found, expected_version, lease)
    assert found is not None
    _core.items_kept(found[0], after, "replace_tail")


def stored_items(
    texts: Sequence[str], stamps: Sequence[bool], first_seq: int, iso: str
) -> list[Any]:  # the rows create stored (keyed items are refused there)
    """The items as the create statement stored them, decoded afresh (copies for the caller)."""
    items = []
    for offset, (text, stamp) in enumerate(zip(texts, stamps, strict=True)):
        item = _json.loads(text)
        item["seq"] = first_seq + offset
        if stamp:
            item["timestamp"] = iso
        items.append(item)
    return items


def metadata_rows(metadata: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The rows of the metadata index for a session: key, value, and their hash.

    Keys are stored as JSON strings (so any key, even one holding a NUL, fits in a text
    column) and values as canonical JSON, so equal JSON values are equal strings. The index is
    on the 64-bit hash of both: a btree cannot hold entries larger than ~2.7 kB, and a long
    metadata value must not make a write fail.
    """
    keys, values, hashes = [], [], []
    for key, value in _core.metadata_index(metadata):
        key_json = _json.dumps_text(key, what="metadata key")
        keys.append(key_json)
        values.append(value)
        hashes.append(kv_hash(key_json, value))
    return {"meta_keys": keys, "meta_values": values, "meta_hashes": hashes}


def kv_hash(key_json: str, value_json: str) -> int:
    # a JSON string token has one end, so key_json + value_json is unambiguous
    digest = hashlib.blake2b((key_json + value_json).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def as_time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


# --- rows ----------------------------------------------------------------------------------------

Found = tuple[_core.Doc, int] | None
"""A session's stored header document (with its lease token) and the statement's now, or
None when no row has the id."""


def decode_header(session_id: str, text: str) -> _core.Doc:
    doc: _core.Doc = _core.decode_stored(
        session_id, text, dict, "its header", "its header is not a JSON object"
    )
    return doc


def cursor_fields(text: str) -> tuple[int, str]:
    """(updated_at, id) of a listed header: where the next page starts."""
    doc = decode_header("(listed)", text)
    return int(doc["updated_at"]), str(doc["id"])


def decode_found(session_id: str, row: Sequence[Any] | None) -> Found:
    """The answer of :data:`SNAPSHOT` / :data:`SNAPSHOT_FOR_UPDATE`."""
    if row is None:
        return None
    doc = decode_header(session_id, row[0])
    doc["lease_token"] = row[1]
    return doc, int(row[2])


# --- why a guarded statement changed nothing -----------------------------------------------------
# A guarded statement that matches no row says nothing about why. These read the session as it
# is now and raise the error that explains it; returning means nothing does (the session
# changed in between, or it needs an upgrade first), and the store retries under a row lock.


def _live(session_id: str, found: Found) -> tuple[_core.Doc, int]:
    if found is None or not _core.is_live(found[0], found[1]):
        raise SessionNotFound(session_id)
    return found


def judge_write(
    session_id: str, found: Found, expected_version: int | None, lease: Lease | None
) -> None:
    """commit and replace_history: the checks, in the order every store makes them."""
    doc, now = _live(session_id, found)
    check_write(session_id, doc, expected_version, lease, now)


def judge_fork(parent_id: str, found: Found, at: int) -> bool:
    """fork_session: raise what explains why the parent cannot be forked (missing, newer,
    ``at`` outside its history); False when it must be copied instead of shared (compacted,
    stored by an older tether, too deep a chain: see ``_sql_shares.FORK``), True when the statement
    should have matched (the parent changed in between, or the child's id was in the way)."""
    doc, _ = _live(parent_id, found)
    _core.check_writable(parent_id, doc)
    _core.items_kept(doc, at, "fork")
    return int(doc["schema_version"]) == schema.current and doc["history_len"] == doc["last_seq"]


def judge_create(session_id: str, found: Found) -> None:
    if found is None:
        return  # deleted in between: the locked retry creates it
    doc, now = found
    _core.check_writable(session_id, doc)
    if _core.is_live(doc, now):
        raise SessionExists(session_id, doc["version"])


def judge_restore(
    session_id: str, found: Found, replace: bool, expected_version: int | None = None
) -> bool:
    """restore: whether a stored row must go first; raise if it may not be written over (see
    ``_core.restore_over``: the row is locked, so nothing moves until the insert)."""
    if found is None:
        return _core.restore_over(session_id, None, 0, expected_version=expected_version)
    doc, now = found
    return _core.restore_over(
        session_id, doc, now, replace=replace, expected_version=expected_version
    )


def restore_params(doc: _core.Doc, encoded: _core.PreparedItems) -> dict[str, Any]:
    """The parameters of :data:`RESTORE` for the checked document and items of a restore."""
    for name in ("owner", "agent", "lease_owner"):
        check_text(name, doc[name], InvalidSessionData)
    plain = (
        "id", "owner", "agent", "status", "parent_id", "fork_seq", "version", "schema_version",
        "last_seq", "history_len", "lease_owner", "lease_fence",
    )  # fmt: skip
    return {
        **{name: doc[name] for name in plain},
        **{name: _json.dumps_text(doc[name], what=name) for name in _core.JSON_FIELDS},
        **{name: as_time(doc[name]) for name in ("created_at", "updated_at", "expires_at")},
        "seqs": [seq for seq, _ in encoded],
        "datas": [data.decode() for _, data in encoded],
        "key_names": [key for key, _ in encoded.keys],
        "key_seqs": [seq for _, seq in encoded.keys],
        **metadata_rows(doc["metadata"]),
    }


def judge_delete(
    session_id: str,
    found: Found,
    expected_version: int | None,
    lease: Lease | None = None,
    force: bool = False,
) -> None:
    """delete: a newer schema is never deleted; a live session follows the lease rules
    (unless ``force``), then conflicts at another version."""
    if found is None:
        return
    doc, now = found
    _core.check_writable(session_id, doc)
    if not _core.is_live(doc, now):
        return
    _core.check_delete_lease(doc, lease, force, now)
    if expected_version not in (None, doc["version"]):
        raise ConflictError(session_id, expected_version, doc["version"])


def judge_claim(session_id: str, found: Found, owner: str) -> None:
    doc, now = _live(session_id, found)
    _core.check_writable(session_id, doc)
    _core.claim_fields(doc, owner, 1, now)  # raises AlreadyClaimed; the fields are not used


def judge_lease(lease: Lease, found: Found) -> None:
    if found is None or not _core.is_live(found[0], found[1]):
        raise LeaseLost(lease.session_id, "the session no longer exists")
    _core.check_lease(found[0], lease, found[1])
