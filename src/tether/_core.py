"""The rules every store shares, with no I/O: encode, check, apply, filter, page.

A store method is *validate and encode here -> one atomic I/O step -> decode here, or raise*.
Keeping the rules here means a store class only moves bytes, and every store agrees on what a
commit, a window or a listing means.

Headers travel between this module and the stores as plain *header documents* (``Doc``): the
fields of :class:`~tether.SessionHeader` with ``status`` as its string, timestamps as integer
microseconds since the epoch, and ``metadata`` / ``state`` / ``options`` as JSON values.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import math
import secrets
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from . import _json
from ._ids import validate_session_id
from ._time import from_micros, to_micros
from .errors import (
    AlreadyClaimed,
    ConflictError,
    CorruptSession,
    DuplicateItemKey,
    InvalidRequest,
    InvalidSessionData,
    LeaseLost,
    ReservedStateKey,
    SessionExists,
    SessionNotFound,
    TetherError,
)
from .models import (
    HistoryItem,
    KeyedItem,
    Lease,
    Page,
    Session,
    SessionHeader,
    SessionStatus,
    StoredItem,
)
from .schema import schema

log = logging.getLogger("tether.stores")

Doc = dict[str, Any]
EncodedItem = tuple[int, bytes]
"""A history row ready to store: its ``seq`` and its JSON (which includes the ``seq``)."""

JSON_FIELDS = ("metadata", "state", "options")
DOC_FIELDS = (
    "id",
    "owner",
    "agent",
    "status",
    *JSON_FIELDS,
    "parent_id",
    "fork_seq",
    "version",
    "schema_version",
    "created_at",
    "updated_at",
    "expires_at",
    "last_seq",
    "history_len",
    "lease_owner",
    "lease_token",
    "lease_fence",
    "lease_expires_at",
)
"""Every field of a header document, in the order the SQL stores keep their columns."""
CHANGEABLE_FIELDS = frozenset({"owner", "agent", "status", "expires_at", *JSON_FIELDS})
_STATUSES = frozenset(s.value for s in SessionStatus)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# --- limits: what every store can hold (docs/model.md, "Limits") --------------------------------
# Every public call checks its arguments against these before any I/O, here, once, so that a
# value one store could hold and another could not is refused by all of them alike.

MAX_INT = 2**63 - 1
"""Versions, seqs, fences, ``last`` / ``after`` / ``limit``: signed 64-bit (SQL BIGINT)."""
MIN_INT = -(2**63)
MAX_NAME_LENGTH = 256
"""owner, agent and a lease's owner: at most this many characters."""
MAX_TTL = timedelta(days=3653)
"""The longest lease: about 10 years. Longer ones would overflow a timestamp somewhere."""
MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)
"""Stored timestamps (``expires_at``, the restored ``created_at`` / ``updated_at``) lie in
[MIN_TIME, MAX_TIME): Redis keeps them in sorted-set scores and Lua numbers, exact to 2**53 µs."""
_MIN_MICROS = to_micros(MIN_TIME)
_MAX_MICROS = to_micros(MAX_TIME)
_MAX_TTL_MICROS = MAX_TTL // timedelta(microseconds=1)


def check_text(
    name: str, value: object, *, optional: bool = True, error: type[InvalidRequest] = InvalidRequest
) -> str | None:
    """A name-like string (owner, agent): a str of valid Unicode, no NUL, <= MAX_NAME_LENGTH.

    NUL and lone surrogates are refused because PostgreSQL text and UTF-8 (SQLite, Redis, files)
    cannot hold them; the length keeps index entries small.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        none = " or None" if optional else ""
        raise error(f"{name} must be a str{none}, not {type(value).__name__} {_short(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise error(f"{name} has {len(value)} characters; the limit is {MAX_NAME_LENGTH}")
    if "\x00" in value:
        raise error(f"{name} {_short(value)} contains a NUL character; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(
            f"{name} {_short(value)} is not valid Unicode (a lone surrogate at {exc.start}); "
            "decode your text with errors='replace' first"
        ) from None
    return value


def check_int(name: str, value: object, *, low: int = 0, high: int = MAX_INT) -> int:
    """An int (not a bool) in [low, high]; raise :class:`InvalidRequest` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an int, not {type(value).__name__} {_short(value)}")
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be an int from {low} to {high}, not {value}")
    return value


def check_time(name: str, value: object) -> int | None:
    """An aware datetime in [MIN_TIME, MAX_TIME) as µs, or None; raise before any I/O."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        naive = "a naive datetime" if isinstance(value, datetime) else _short(value)
        raise InvalidRequest(
            f"{name} must be a timezone-aware datetime or None, not {naive} "
            "(e.g. datetime.now(timezone.utc) + timedelta(days=1))"
        )
    try:
        micros = to_micros(value)
    except (OverflowError, ValueError) as exc:  # an offset pushing it past datetime's range
        raise InvalidRequest(f"{name} {value!r} cannot be stored ({exc})") from None
    if not _MIN_MICROS <= micros < _MAX_MICROS:
        raise InvalidRequest(
            f"{name} {value.isoformat()} is out of range: stored times lie between "
            f"{MIN_TIME.date()} and {MAX_TIME.date()} (UTC)"
        )
    return micros


def _bound_micros(name: str, value: object) -> int | None:
    """A listing's ``updated_after`` / ``updated_before`` as µs, clamped to just outside the
    storable range: any aware datetime is a valid bound, and clamping cannot change which
    stored sessions it keeps (their times are all inside the range)."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        naive = "a naive datetime" if isinstance(value, datetime) else _short(value)
        raise InvalidRequest(f"{name} must be a timezone-aware datetime or None, not {naive}")
    try:
        micros = to_micros(value)
    except OverflowError:
        micros = _MAX_MICROS if value.year > 1970 else _MIN_MICROS
    return min(max(micros, _MIN_MICROS - 1), _MAX_MICROS + 1)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- headers -----------------------------------------------------------------------------------


def _opt_micros(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def header_to_doc(header: SessionHeader) -> Doc:
    return {
        "id": header.id,
        "owner": header.owner,
        "agent": header.agent,
        "status": SessionStatus(header.status).value,
        "metadata": header.metadata,
        "state": header.state,
        "options": header.options,
        "parent_id": header.parent_id,
        "fork_seq": header.fork_seq,
        "version": header.version,
        "schema_version": header.schema_version,
        "created_at": _opt_micros(header.created_at),
        "updated_at": _opt_micros(header.updated_at),
        "expires_at": _opt_micros(header.expires_at),
        "last_seq": header.last_seq,
        "history_len": header.history_len,
        "lease_owner": header.lease_owner,
        "lease_token": None,
        "lease_fence": header.lease_fence,
        "lease_expires_at": _opt_micros(header.lease_expires_at),
    }


def _fields_from_doc(doc: Doc) -> dict[str, Any]:
    fields = dict(doc)
    fields.pop("lease_token", None)  # the holder's secret: never in a header or a listing
    fields["status"] = SessionStatus(doc["status"])
    for name in ("created_at", "updated_at", "expires_at", "lease_expires_at"):
        value = doc.get(name)
        fields[name] = None if value is None else from_micros(value)
    if "lease_fence" in fields:  # the models' field order (SessionHeader declares it last)
        fields["lease_fence"] = fields.pop("lease_fence")
    return fields


_M = TypeVar("_M", bound=BaseModel)


def construct_trusted(cls: type[_M], fields: dict[str, Any]) -> _M:
    """``cls.model_construct(**fields)`` for trusted data that holds every field, faster.

    pydantic's ``model_construct`` walks every field (aliases, defaults) on each call, which
    was about half the cost of listing 50 headers. When ``fields`` has exactly the model's
    fields, there is nothing to fill in, so the instance is set up directly, as
    ``model_construct`` itself does (tests/test_core.py checks the two agree field for field);
    anything else goes through ``model_construct``.
    """
    if fields.keys() != cls.__pydantic_fields__.keys():
        return cls.model_construct(**fields)
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", fields)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields))
    object.__setattr__(model, "__pydantic_extra__", None)
    private = cls.__private_attributes__
    object.__setattr__(
        model,
        "__pydantic_private__",
        {name: attr.get_default() for name, attr in private.items()} if private else None,
    )
    return model


def doc_to_header(doc: Doc) -> SessionHeader:
    """Build a header from a document the store wrote itself (trusted, not re-validated)."""
    return construct_trusted(SessionHeader, _fields_from_doc(doc))


def needs_upgrade(doc: Doc) -> bool:
    return int(doc["schema_version"]) != schema.current


def is_newer(doc: Doc) -> bool:
    """Whether a newer tether stored this session: this one never deletes or overwrites it."""
    return int(doc["schema_version"]) > schema.current


def check_writable(session_id: str, doc: Doc) -> None:
    """Raise if this tether may not write over the stored session (a newer schema)."""
    schema.check(session_id, int(doc["schema_version"]))


def restore_over(
    session_id: str,
    stored: Doc | None,
    now: int,
    *,
    replace: bool = False,
    expected_version: int | None = None,
) -> bool:
    """Whether ``restore`` (or ``create``) must remove the ``stored`` session first; raises if
    it may not write over it. Every store decides with this, under its lock or in its script.

    A session stored by a newer tether is never written over, expired or not
    (:class:`~tether.errors.UnsupportedSchemaVersion`); a live one only with ``replace``
    (else :class:`~tether.errors.SessionExists`). With ``expected_version`` the write is a
    compare-and-replace: the live stored session must be at that version, else
    :class:`ConflictError` (:class:`~tether.errors.SessionNotFound` if there is none), so a
    commit that landed since the caller read it is never overwritten.
    """
    if stored is not None:
        check_writable(session_id, stored)
    live = stored is not None and is_live(stored, now)
    if expected_version is not None:
        if stored is None or not live:
            raise SessionNotFound(session_id)
        if stored["version"] != expected_version:
            raise ConflictError(session_id, expected_version, stored["version"])
    elif stored is not None and live and not replace:
        raise SessionExists(session_id, stored["version"])
    return stored is not None


def check_restore_args(replace: object, expected_version: object) -> None:
    """``restore(replace=, expected_version=)``: raise before any I/O if one is bad."""
    if not isinstance(replace, bool):
        raise InvalidRequest(f"replace must be True or False, not {_short(replace)}")
    if expected_version is not None:
        check_int("expected_version", expected_version, low=MIN_INT)


def upgrade_doc(doc: Doc) -> Doc:
    """A copy of ``doc`` brought to the current schema if it is older; else ``doc`` itself."""
    if int(doc["schema_version"]) < schema.current:
        return schema.upgrade_header(dict(doc))
    return doc


def readable_session(doc: Doc, history: list[Doc]) -> Session:
    """The session a load returns: upgraded in memory if it was stored by an older tether.

    Raises :class:`~tether.errors.UnsupportedSchemaVersion` if a newer tether stored it.
    """
    check_writable(str(doc["id"]), doc)
    stored = int(doc["schema_version"])
    if needs_upgrade(doc):
        doc = upgrade_doc(doc)
        history = upgrade_items(history, stored)
    try:
        session = make_session(doc, history)
    except _UNDECODABLE as exc:
        raise CorruptSession(str(doc.get("id")), f"its header cannot be read ({exc!r})") from exc
    if stored != session.schema_version:
        session._stored_schema_version = stored
    return session


_UNDECODABLE = (KeyError, ValueError, TypeError, OverflowError, AttributeError)
"""What reading a stored document that no tether wrote raises (a row edited by hand, say)."""


def listed_header(doc: Doc) -> SessionHeader:
    """A listing's header from a stored document, upgraded; :class:`CorruptSession` (never a
    ``ValueError`` / ``OverflowError``) if the document cannot be read."""
    try:
        return doc_to_header(upgrade_doc(doc))
    except _UNDECODABLE as exc:
        raise CorruptSession(str(doc.get("id")), f"its header cannot be read ({exc!r})") from exc


def listed_headers(docs: Iterable[Doc]) -> list[SessionHeader]:
    """The headers of a listing's documents, skipping (and logging) any that cannot be read:
    one bad session must not hide the others."""
    headers = []
    for doc in docs:
        try:
            headers.append(listed_header(doc))
        except TetherError as exc:
            log.warning("skipping session %r in a listing: %s", doc.get("id"), exc)
    return headers


def encode_item(record: Doc) -> bytes:
    """Encode a stored row (one :func:`decode_items` returned, perhaps upgraded)."""
    return _json.dumps(record, what="history item")


def make_session(doc: Doc, records: list[Doc]) -> Session:
    """The session of a header document and its stored rows (both views of the rows)."""
    fields = _fields_from_doc(doc)
    fields["history"], items = item_views(str(doc.get("id")), records)
    session = construct_trusted(Session, fields)
    session._items = items
    return session


def validate_header_doc(session_id: str, doc: object) -> Doc:
    """Check a header document read from untrusted storage (a file, say).

    Anything wrong becomes :class:`CorruptSession` for this id alone; a newer schema version
    becomes :class:`~tether.errors.UnsupportedSchemaVersion`. The document is returned as
    stored (not upgraded).
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), int):
        raise CorruptSession(session_id, "header is not a tether session document")
    check_writable(session_id, doc)
    try:
        SessionHeader.model_validate(_fields_from_doc(schema.upgrade_header(dict(doc))))
    except (ValidationError, *_UNDECODABLE) as exc:
        raise CorruptSession(session_id, f"header does not validate ({exc})") from exc
    if doc.get("id") != session_id:
        raise CorruptSession(session_id, f"header belongs to session {doc.get('id')!r}")
    return doc


def new_session_doc(session: SessionHeader, now: int) -> Doc:
    """The header document ``create`` stores: checked, copied, version 1, stamped ``now``."""
    doc = _checked_header_doc(session, restoring=False)
    check_runtime_block(doc["state"], "a new session cannot start with one")
    doc.update(
        version=1,
        schema_version=schema.current,
        created_at=now,
        updated_at=now,
        last_seq=0,
        history_len=0,
        lease_owner=None,
        lease_token=None,
        lease_fence=0,
        lease_expires_at=None,
    )
    return doc


def restore_doc(session: Session) -> tuple[Doc, PreparedItems]:
    """The header document and items ``restore`` writes: the session exactly as given.

    Versions, timestamps, ``seq`` numbers and the lease fence are kept; a lease itself is not
    (its token never leaves a store), so the restored session is unclaimed. The history must be
    the session's whole history: ``history_len`` items with contiguous seqs ending at
    ``last_seq``. Raises :class:`InvalidRequest` (or the schema errors) before any I/O.
    """
    if not isinstance(session, Session):
        raise InvalidRequest(f"restore takes a tether.Session, not {type(session).__name__}")
    validate_session_id(session.id)
    version = session.version
    if isinstance(version, int) and (
        version < 1 or session.created_at is None or session.updated_at is None
    ):
        raise InvalidRequest(
            f"session {session.id!r} was never stored (version {session.version}): restore "
            "takes sessions exported from a store; use create() for new ones"
        )
    schema.check(session.id, check_int("schema_version", session.schema_version, low=1))
    doc = _checked_header_doc(session, restoring=True)
    doc.update(lease_token=None, lease_expires_at=None)
    history = session.history
    if not isinstance(history, list):
        raise InvalidSessionData(f"history must be a list of item dicts, not {_short(history)}")
    if not all(isinstance(item, dict) for item in history):
        raise InvalidSessionData("history must be a list of item dicts")
    items = session.items  # exact (with keys) when the session was loaded from a store
    first = session.last_seq - session.history_len + 1
    seqs = [entry.seq for entry in items]
    if any(isinstance(seq, bool) or not isinstance(seq, int) for seq in seqs):
        raise InvalidRequest(f"session {session.id!r}: every history item needs an int 'seq'")
    if len(items) != session.history_len or seqs != list(range(first, session.last_seq + 1)):
        raise InvalidRequest(
            f"session {session.id!r}: restore needs the whole history, seqs {first}.."
            f"{session.last_seq} in order (got {len(items)} items)"
        )
    encoded = PreparedItems()
    encoded.keys = []
    seen: set[str] = set()
    for offset, entry in enumerate(items):
        if not isinstance(entry.timestamp, str) or not entry.timestamp:
            raise InvalidSessionData(f"history item {offset} needs a str 'timestamp'")
        if not isinstance(entry.item, dict):
            raise InvalidSessionData(f"history item {offset} is not a dict")
        if entry.key is not None:
            key = check_item_key(entry.key, f"history item {offset}: key")
            if key in seen:
                raise DuplicateItemKey(session.id, key)
            seen.add(key)
            encoded.keys.append((key, entry.seq))
        fields = _row_fields(entry.seq, entry.timestamp, entry.key)
        encoded.append((entry.seq, _row(fields, entry.item, offset)))
    return doc, encoded


_STORED_INTS = ("version", "last_seq", "history_len", "lease_fence")
_STORED_TIMES = ("created_at", "updated_at")


def _checked_header_doc(session: SessionHeader, *, restoring: bool) -> Doc:
    """``header_to_doc(session)`` after checking every field a caller sets, before any I/O.

    A model's fields may have been assigned after validation (or skipped it through
    ``model_construct``), so nothing is taken on trust. ``create`` replaces the fields the
    store owns, so only ``restore`` (which keeps them) has them checked.
    """
    if not isinstance(session, SessionHeader):
        raise InvalidRequest(f"expected a tether.Session, not {type(session).__name__}")
    validate_session_id(session.id)
    if session.parent_id is not None:
        validate_session_id(session.parent_id)
    for name in ("owner", "agent"):
        check_text(name, getattr(session, name), error=InvalidSessionData)
    status = session.status
    if not isinstance(status, str) or status not in _STATUSES:  # SessionStatus is a str
        raise InvalidSessionData(f"status {_short(status)} is not one of {sorted(_STATUSES)}")
    if session.fork_seq is not None:
        check_int("fork_seq", session.fork_seq)
    expires_at = check_time("expires_at", session.expires_at)
    stored: Doc = {}
    if restoring:
        for name in _STORED_INTS:
            stored[name] = check_int(name, getattr(session, name))
        for name in _STORED_TIMES:
            stored[name] = check_time(name, getattr(session, name))
        stored["lease_owner"] = check_text("lease_owner", session.lease_owner)
    doc: Doc = {
        "id": session.id,
        "owner": session.owner,
        "agent": session.agent,
        "status": SessionStatus(status).value,
        "parent_id": session.parent_id,
        "fork_seq": session.fork_seq,
        "version": session.version,
        "schema_version": session.schema_version,
        "created_at": None,
        "updated_at": None,
        "expires_at": expires_at,
        "last_seq": session.last_seq,
        "history_len": session.history_len,
        "lease_owner": session.lease_owner,
        "lease_token": None,
        "lease_fence": session.lease_fence,
        "lease_expires_at": None,
        **stored,
    }
    for name in JSON_FIELDS:
        doc[name] = json_copy(getattr(session, name), what=name, must_be_object=True)
    return {name: doc[name] for name in DOC_FIELDS}


def json_copy(value: Any, *, what: str, must_be_object: bool = False) -> Any:
    """A deep copy made by a JSON round trip: proves the value is JSON and detaches it."""
    if must_be_object and not isinstance(value, dict):
        raise InvalidSessionData(f"{what} must be a JSON object (dict), not {type(value)}")
    return _json.loads(_json.dumps(value, what=what))


# --- history items -----------------------------------------------------------------------------


def item_list(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> list[Mapping[str, Any] | KeyedItem]:
    """``list(items)``, refusing a single value (a str, a dict, a number) with
    :class:`InvalidSessionData`: a store drains ``append=`` / ``items=`` with this before any
    I/O, and each item is checked when encoded."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise InvalidSessionData(
            f"history items must be a list of item dicts, not {type(items).__name__}"
        )
    return list(items)


MAX_KEY_LENGTH = 256
"""A history item's key (:class:`~tether.KeyedItem`): at most this many characters."""
MAX_KEYS = 1000
"""``items_by_key``: at most this many keys per call."""


def check_item_key(value: object, what: str = "key") -> str:
    """A history item's key: a non-empty str of valid Unicode, no NUL, <= MAX_KEY_LENGTH."""
    if value == "":
        raise InvalidSessionData(f"{what} is empty; a key has 1 to {MAX_KEY_LENGTH} characters")
    text = check_text(what, value, optional=False, error=InvalidSessionData)
    assert text is not None
    return text


def check_item_keys(keys: object) -> list[str]:
    """The keys of ``items_by_key``: a list (not a lone str) of 1 to MAX_KEYS valid keys."""
    if isinstance(keys, (str, bytes, Mapping)) or not isinstance(keys, Iterable):
        raise InvalidRequest(f"keys must be a list of str keys, not {type(keys).__name__}")
    checked = list(dict.fromkeys(check_item_key(key) for key in keys))
    if len(checked) > MAX_KEYS:
        raise InvalidRequest(f"{len(checked)} keys in one call; the limit is {MAX_KEYS}")
    return checked


class PreparedItems(list[EncodedItem]):
    """Encoded new items, with ``keys``: (key, seq) of each keyed one, for the store's index."""

    keys: list[tuple[str, int]]


class UnnumberedItems(list[tuple[bool, bytes]]):
    """Encoded new items a server numbers, with ``keys``: (key, offset in the batch)."""

    keys: list[tuple[str, int]]


def _checked_items(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """(offset, a copy, key or None) of each new history item, refusing anything that is not
    one. Any JSON object is an item (no ``role`` needed); its own keys are never touched."""
    seen: set[str] = set()
    for offset, entry in enumerate(item_list(items)):
        key = None
        item: object = entry
        if isinstance(entry, KeyedItem):
            key = check_item_key(entry.key, f"history item {offset}: key")
            if key in seen:
                raise DuplicateItemKey(None, key)
            seen.add(key)
            item = entry.item
        if not isinstance(item, Mapping):
            raise InvalidSessionData(f"history item {offset} is a {type(item)}, not a dict")
        yield offset, dict(item), key


def _own_stamp(item: Mapping[str, Any]) -> str | None:
    """An item's own ``timestamp`` string becomes tether's (an imported history keeps its
    times); any other value is just part of the item."""
    stamp = item.get("timestamp")
    return stamp if isinstance(stamp, str) else None


def _row(fields: dict[str, Any], item: Mapping[str, Any], offset: int) -> bytes:
    """A stored history row (schema 3): ``{"seq": ..., "timestamp": ..., "key": ..., "item":
    {...}}``, the item as given beside tether's fields. The item is encoded on its own, so an
    error names its path as the caller wrote it (``history item 2.content``)."""
    data = _json.dumps(item, what=f"history item {offset}")
    if not fields:
        return b'{"item":' + data + b"}"
    return _json.dumps(fields, what=f"history item {offset}")[:-1] + b',"item":' + data + b"}"


def _row_fields(seq: int, stamp: str, key: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"seq": seq, "timestamp": stamp}
    if key is not None:
        fields["key"] = key
    return fields


def encode_unnumbered_items(items: Iterable[Mapping[str, Any] | KeyedItem]) -> UnnumberedItems:
    """Check and encode new items for a store that numbers and stamps them server-side.

    Each row is encoded without ``seq`` (and without ``timestamp`` when the item has no
    timestamp string of its own), paired with whether the server must add the timestamp: it
    adds ``"seq"`` (and ``"timestamp"``) as top-level keys of the row, beside ``"item"``. The
    rules are those of :func:`prepare_items`; the Redis and PostgreSQL stores use this because
    only their server-side step knows the session's ``last_seq`` and the server's time.
    """
    encoded = UnnumberedItems()
    encoded.keys = []
    for offset, item, key in _checked_items(items):
        stamp = _own_stamp(item)
        fields: dict[str, Any] = {}
        if key is not None:
            fields["key"] = key
            encoded.keys.append((key, offset))
        if stamp is not None:
            fields["timestamp"] = stamp
        encoded.append((stamp is None, _row(fields, item, offset)))
    return encoded


def prepare_items(
    items: Iterable[Mapping[str, Any] | KeyedItem], first_seq: int, now: int
) -> PreparedItems:
    """Number, timestamp and encode new history items; raise before any I/O if one is bad."""
    now_stamp: str | None = None
    encoded = PreparedItems()
    encoded.keys = []
    for offset, item, key in _checked_items(items):
        seq = first_seq + offset
        stamp = _own_stamp(item)
        if stamp is None:
            if now_stamp is None:
                now_stamp = from_micros(now).isoformat(timespec="microseconds")
            stamp = now_stamp
        if key is not None:
            encoded.keys.append((key, seq))
        encoded.append((seq, _row(_row_fields(seq, stamp, key), item, offset)))
    return encoded


def _is_legacy(record: Mapping[str, Any]) -> bool:
    """A row stored before schema 3: the item itself with ``seq`` / ``timestamp`` merged in.
    Such rows always had a str ``role``; a schema-3 row never has one at its top level."""
    return "role" in record or not isinstance(record.get("item"), dict)


def item_views(
    session_id: str, records: Iterable[Mapping[str, Any]]
) -> tuple[list[HistoryItem], list[StoredItem]]:
    """The two views of stored rows: ``history`` (items with ``seq`` / ``timestamp`` merged
    into copies, as before schema 3) and ``items`` (each item exactly as stored)."""
    history: list[HistoryItem] = []
    stored: list[StoredItem] = []
    try:
        for record in records:
            if _is_legacy(record):
                item = {k: v for k, v in record.items() if k not in ("seq", "timestamp")}
                key = None
            else:
                item, key = record["item"], record.get("key")
            seq, stamp = record["seq"], record["timestamp"]
            stored.append(StoredItem(seq=seq, timestamp=stamp, key=key, item=item))
            history.append({**item, "seq": seq, "timestamp": stamp})
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptSession(session_id, f"a history item cannot be read ({exc!r})") from exc
    return history, stored


def keyed_items(session_id: str, raw: Iterable[bytes | str]) -> dict[str, StoredItem]:
    """What ``items_by_key`` returns for the stored rows a store found by key."""
    return keyed_records(session_id, decode_items(session_id, raw))


def keyed_records(session_id: str, records: Iterable[Mapping[str, Any]]) -> dict[str, StoredItem]:
    """``keyed_items`` for rows already decoded."""
    _, items = item_views(session_id, records)
    return {item.key: item for item in items if item.key is not None}


def decode_items(session_id: str, raw: Iterable[bytes | str]) -> list[Doc]:
    """Decode stored rows, one JSON object each (see :func:`make_session` for the items)."""
    try:
        return [_json.loads(data) for data in raw]
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, f"a history item is not valid JSON ({exc})") from exc


def decode_item_array(session_id: str, joined: str) -> list[Doc]:
    """Decode stored items that the store joined into one JSON array."""
    try:
        items = _json.loads(joined)
    except _json.JSONDecodeError as exc:
        raise CorruptSession(session_id, f"a history item is not valid JSON ({exc})") from exc
    if not isinstance(items, list):
        raise CorruptSession(session_id, "its history is not a list of items")
    return items


def upgrade_items(items: list[Doc], from_version: int) -> list[Doc]:
    if not schema.items_need_upgrade(from_version):
        return items
    return [schema.upgrade_item(item, from_version) for item in items]


def check_window(last: int | None, after: int | None, limit: int | None = None) -> None:
    """The arguments of ``load(last=, after=, limit=)``; raise before any I/O if one is bad."""
    for name, value in (("last", last), ("after", after)):
        if value is not None:
            check_int(name, value)
    check_limit(limit)


def check_limit(limit: int | None, *, name: str = "limit", optional: bool = True) -> None:
    """A page size: ``load(limit=)`` takes None (no limit) or an int >= 1."""
    if limit is None and optional:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_INT:
        none = " or None (no limit)" if optional else ""
        raise InvalidRequest(f"{name} must be an int >= 1{none}, not {_short(limit)}")


def window_floor(doc: Doc, last: int | None, after: int | None) -> int:
    """The seq just before the ``load(last=, after=)`` window of a stored history: the window
    is the seqs above it up to ``last_seq`` (a session's seqs are contiguous)."""
    floor = int(doc["last_seq"] - doc["history_len"])
    if after is not None:
        floor = max(floor, after)
    if last is not None:
        floor = max(floor, int(doc["last_seq"]) - last)
    return floor


def window(
    seqs: Sequence[int], last: int | None, after: int | None, limit: int | None = None
) -> slice:
    """The slice of an ascending ``seqs`` list that ``load(last=, after=, limit=)`` returns."""
    start = 0
    if after is not None:
        # bisect by hand: seqs are ascending and contiguous in practice, but never assume it
        lo, hi = 0, len(seqs)
        while lo < hi:
            mid = (lo + hi) // 2
            if seqs[mid] <= after:
                lo = mid + 1
            else:
                hi = mid
        start = lo
    if last is not None:
        start = max(start, len(seqs) - last)
    stop = len(seqs) if limit is None else min(len(seqs), start + limit)
    return slice(start, stop)


class HistoryPages:
    """Where ``iter_history`` is between two pages (shared by its sync and async sides).

    Each page is ``load(after=self.after, limit=self.page_size)``; :meth:`take` checks it
    against the first page and moves ``after`` past it.
    """

    def __init__(self, session_id: str, after: int | None, page_size: int) -> None:
        validate_session_id(session_id)
        check_window(None, after)
        check_limit(page_size, name="page_size", optional=False)
        self.session_id = session_id
        self.after = after
        self.page_size = page_size
        self._first: SessionHeader | None = None

    def take(self, page: Session) -> tuple[list[HistoryItem], bool]:
        """The page's items and whether another page follows.

        Raises :class:`ConflictError` if the history was replaced (``first_seq`` moved past
        the next seq expected) or the session deleted and created again since the first page.
        Items appended meanwhile are simply read: iteration ends at the page whose items reach
        that page's ``last_seq``.
        """
        first = self._first
        if first is None:
            self._first = page.header
        else:
            how = None
            if page.created_at != first.created_at:
                how = "the session was deleted and created again"
            elif self.after is not None and page.first_seq > self.after + 1:
                how = f"its history now starts at seq {page.first_seq}"
            if how is not None:
                raise ConflictError(
                    self.session_id,
                    first.version,
                    page.version,
                    f"the history of session {self.session_id!r} was replaced during "
                    f"iteration ({how}; version {first.version} when it began, {page.version} "
                    f"now): the items after seq {self.after} it was reading are gone. Start "
                    "the iteration again.",
                )
        items = page.history
        if not items or items[-1]["seq"] >= page.last_seq:
            return items, False
        self.after = int(items[-1]["seq"])
        return items, True


def fork_count(parent: Doc, at: int) -> int:
    """How many of the parent's items a fork at seq ``at`` keeps; raises if ``at`` is outside."""
    if isinstance(at, bool) or not isinstance(at, int):
        raise InvalidRequest(f"at must be a seq (int), not {_short(at)}")
    first = parent["last_seq"] - parent["history_len"] + 1
    if not first - 1 <= at <= parent["last_seq"]:
        raise InvalidRequest(
            f"cannot fork {parent['id']!r} at seq {at}: its history holds seqs "
            f"{first}..{parent['last_seq']}"
        )
    return int(at - first + 1)


# --- commits -----------------------------------------------------------------------------------


# --- the agent runtime's block: state["_tether"] --------------------------------------------------
# The turn snapshot and the human reviews live in state["_tether"]. Were it writable like any
# other key, a commit could forge an approval. So the rule is here, once, in the checks every
# store's create and commit run: an application may not set or change the block, and replacing
# ``state`` keeps the stored block as it is. Only code inside ``runtime_writes()`` (the agent
# and the runtime's own actions) writes it. ``restore`` is exempt: it copies an exported session
# exactly, block included (importing a file trusts it as much as its history).

RUNTIME_KEY = "_tether"
_runtime_writes: ContextVar[bool] = ContextVar("tether_runtime_writes", default=False)


@contextlib.contextmanager
def runtime_writes() -> Iterator[None]:
    """Internal: the writes inside set ``state["_tether"]`` exactly as given (the runtime's path).

    A context variable, so it holds for this thread or task alone (and for the worker thread
    ``asyncio.to_thread`` runs a store call in), never for a concurrent caller.
    """
    token = _runtime_writes.set(True)
    try:
        yield
    finally:
        _runtime_writes.reset(token)


def check_runtime_block(state: Mapping[str, Any], how: str) -> None:
    """Refuse an application's ``state`` that carries the runtime's block."""
    if RUNTIME_KEY in state and not _runtime_writes.get():
        raise ReservedStateKey(RUNTIME_KEY, how)


def keep_runtime_block(changes: Doc, stored_state: Mapping[str, Any]) -> Doc:
    """``changes`` with an application's new ``state`` keeping the stored runtime block."""
    if "state" not in changes or _runtime_writes.get() or RUNTIME_KEY not in stored_state:
        return changes
    return {**changes, "state": {**changes["state"], RUNTIME_KEY: stored_state[RUNTIME_KEY]}}


def needs_runtime_block(changes: Doc) -> bool:
    """Whether the write of ``changes`` must keep the stored block: an application's new
    ``state``. The Redis and PostgreSQL stores pass this to their one write, which merges the
    stored block into the new state server-side (no read first)."""
    return "state" in changes and not _runtime_writes.get()


def normalize_changes(changes: Mapping[str, Any] | None) -> Doc:
    """Check header changes and turn them into document values; raise before any I/O."""
    if changes is None:
        return {}
    if not isinstance(changes, Mapping):
        raise InvalidRequest(
            f"changes must be a dict of header fields or None, not {type(changes).__name__}"
        )
    unknown = set(changes) - CHANGEABLE_FIELDS
    if unknown:
        raise InvalidRequest(
            f"cannot change {sorted(unknown, key=repr)}: a commit may change only "
            f"{sorted(CHANGEABLE_FIELDS)} (history goes in append=, the rest is the store's)"
        )
    out: Doc = {}
    for name, value in changes.items():
        if name in JSON_FIELDS:
            out[name] = json_copy(value, what=name, must_be_object=True)
            if name == "state":
                check_runtime_block(out[name], "a commit cannot set or change it")
        elif name == "status":
            status = value.value if isinstance(value, SessionStatus) else value
            if not isinstance(status, str) or status not in _STATUSES:
                raise InvalidRequest(f"status {value!r} is not one of {sorted(_STATUSES)}")
            out[name] = status
        elif name == "expires_at":
            out[name] = check_time(name, value)
        else:
            out[name] = check_text(name, value)
    return out


def apply_commit(doc: Doc, changes: Doc, appended: int, now: int) -> Doc:
    """The header document after a commit (a new dict; ``doc`` is not changed)."""
    new = {**doc, **keep_runtime_block(changes, doc["state"])}
    new["version"] = doc["version"] + 1
    new["updated_at"] = now
    new["last_seq"] = doc["last_seq"] + appended
    new["history_len"] = doc["history_len"] + appended
    new["schema_version"] = schema.current
    return new


def apply_replace(doc: Doc, count: int, now: int, changes: Doc | None = None) -> Doc:
    """The header after ``replace_history``: fresh seqs continue after the old ``last_seq``."""
    new = apply_commit(doc, changes or {}, 0, now)
    new["last_seq"] = doc["last_seq"] + count
    new["history_len"] = count
    return new


def check_after(after: object) -> int:
    """``replace_tail``'s ``after``: an int seq >= 0 (checked against the history later)."""
    return check_int("after", after)


def tail_kept(doc: Doc, after: int) -> int:
    """How many stored items ``replace_tail(after=)`` keeps; raises if ``after`` is outside
    the history (seqs ``first_seq - 1`` .. ``last_seq``)."""
    first = int(doc["last_seq"] - doc["history_len"] + 1)
    if not first - 1 <= after <= doc["last_seq"]:
        raise InvalidRequest(
            f"cannot replace the items of {doc['id']!r} after seq {after}: its history holds "
            f"seqs {first}..{doc['last_seq']}, so after must be from {first - 1} to "
            f"{doc['last_seq']}"
        )
    return after - first + 1


def apply_tail(doc: Doc, changes: Doc, after: int, count: int, now: int) -> Doc:
    """The header after ``replace_tail``: the items after ``after`` replaced by ``count`` new
    ones numbered from ``after + 1`` (the kept items keep their seqs)."""
    kept = tail_kept(doc, after)
    new = apply_commit(doc, changes, 0, now)
    new["last_seq"] = after + count
    new["history_len"] = kept + count
    return new


def refuse_taken_keys(session_id: str, new: Iterable[tuple[str, int]], taken: Any) -> None:
    """Raise :class:`DuplicateItemKey` if a new item's key is already ``in taken``."""
    for key, _ in new:
        if key in taken:
            raise DuplicateItemKey(session_id, key)


def new_items(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> list[Mapping[str, Any] | KeyedItem]:
    """Drain and check items to append (as :func:`prepare_items` will), before any I/O."""
    drained = item_list(items)
    prepare_items(drained, 1, 0)
    return drained


def check_version(expected_version: int) -> None:
    check_int("expected_version", expected_version, low=MIN_INT)


def is_live(doc: Doc, now: int) -> bool:
    expires = doc.get("expires_at")
    return expires is None or expires > now


# --- leases ------------------------------------------------------------------------------------

LEASE_FIELDS = ("lease_owner", "lease_token", "lease_fence", "lease_expires_at")


def ttl_micros(ttl: float | timedelta) -> int:
    """A lease time-to-live in microseconds: positive, finite, at most :data:`MAX_TTL`."""
    if isinstance(ttl, timedelta):
        micros = ttl // timedelta(microseconds=1)
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and math.isfinite(ttl):
        # compared in seconds first: int(1e300 * 1e6) would be a 1000-digit int
        micros = _MAX_TTL_MICROS + 1 if ttl > MAX_TTL.total_seconds() else int(ttl * 1_000_000)
    else:
        raise InvalidRequest(f"ttl must be seconds (a number) or a timedelta, not {_short(ttl)}")
    if micros <= 0:
        raise InvalidRequest(f"ttl must be positive, not {ttl!r}")
    if micros > _MAX_TTL_MICROS:
        raise InvalidRequest(
            f"ttl {ttl!r} is longer than the longest lease ({MAX_TTL.days} days, about 10 "
            "years); renew a lease instead of taking a longer one"
        )
    return micros


def check_owner(owner: object) -> str:
    if owner == "":
        raise InvalidRequest("a lease owner is a non-empty str naming the runner")
    text = check_text("lease owner", owner, optional=False)
    assert text is not None
    return text


@overload
def check_lease_arg(lease: object) -> Lease: ...
@overload
def check_lease_arg(lease: object, *, optional: bool) -> Lease | None: ...
def check_lease_arg(lease: object, *, optional: bool = False) -> Lease | None:
    """A ``lease=`` argument: a real :class:`Lease` with a valid session id (``renew`` /
    ``release``), or also None with ``optional`` (a write's ``lease=``). Every store checks
    with this, before any I/O."""
    if lease is None and optional:
        return None
    if not isinstance(lease, Lease):
        none = " or None" if optional else ""
        raise InvalidRequest(f"lease must be a tether.Lease{none}, not {type(lease).__name__}")
    validate_session_id(lease.session_id)
    return lease


def lease_is_live(doc: Doc, now: int) -> bool:
    expires = doc.get("lease_expires_at")
    return doc.get("lease_token") is not None and expires is not None and expires > now


def claim_fields(doc: Doc, owner: str, ttl: int, now: int) -> Doc:
    """The lease fields a claim writes; raises if anyone holds a live lease.

    Anyone includes a runner of the same name: holders' names are public (in listings and in
    ``AlreadyClaimed.holder``), so a name proves nothing. Only the lease itself (its secret
    token) acts on a live lease: ``renew`` keeps it, ``release`` frees it for a new claim.
    """
    if lease_is_live(doc, now):
        raise AlreadyClaimed(doc["id"], doc["lease_owner"], from_micros(doc["lease_expires_at"]))
    return {
        "lease_owner": owner,
        "lease_token": secrets.token_hex(16),
        "lease_fence": int(doc.get("lease_fence") or 0) + 1,
        "lease_expires_at": now + ttl,
    }


def check_lease(doc: Doc, lease: Lease, now: int) -> None:
    """Raise :class:`LeaseLost` unless ``lease`` is the session's current, unexpired lease."""
    if not isinstance(lease, Lease):
        raise InvalidRequest(f"lease must be a tether.Lease, not {type(lease).__name__}")
    if doc.get("lease_token") != lease.token:
        holder = doc.get("lease_owner") if lease_is_live(doc, now) else None
        reason = f"{holder!r} claimed it since" if holder else "it was released or replaced"
        raise LeaseLost(doc["id"], reason)
    if not lease_is_live(doc, now):
        raise LeaseLost(doc["id"], f"it expired at {lease.expires_at.isoformat()}")


def check_write_lease(doc: Doc, lease: Lease | None, now: int) -> None:
    """A write with ``lease`` needs it current; a write without one needs no live lease."""
    if lease is not None:
        check_lease(doc, lease, now)
    elif lease_is_live(doc, now):
        raise AlreadyClaimed(doc["id"], doc["lease_owner"], from_micros(doc["lease_expires_at"]))


def check_delete_args(expected_version: int | None, lease: Lease | None, force: bool) -> None:
    """The arguments of ``delete``; raise before any I/O if one is bad."""
    if expected_version is not None:
        check_version(expected_version)
    check_lease_arg(lease, optional=True)
    if not isinstance(force, bool):
        raise InvalidRequest(f"force must be True or False, not {force!r}")


def check_delete_lease(doc: Doc, lease: Lease | None, force: bool, now: int) -> None:
    """``delete`` follows the lease rules of every write, unless ``force`` overrides them."""
    if not force:
        check_write_lease(doc, lease, now)


def released_fields() -> Doc:
    return {"lease_token": None, "lease_expires_at": None}


def lease_from_doc(doc: Doc) -> Lease:
    return Lease(
        session_id=doc["id"],
        owner=doc["lease_owner"],
        token=doc["lease_token"],
        fence=doc["lease_fence"],
        expires_at=from_micros(doc["lease_expires_at"]),
    )


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """A checked ``list`` request. Order: ``updated_at`` descending, then ``id`` descending."""

    owner: str | None = None
    agent: str | None = None
    statuses: frozenset[str] | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    """(key, canonical JSON of the value) pairs that must all match."""
    updated_after: int | None = None
    updated_before: int | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: tuple[int, str] | None = None
    """(updated_at, id) of the last session of the previous page."""

    def matches(self, doc: Doc, now: int) -> bool:
        if not is_live(doc, now):
            return False
        if self.owner is not None and doc["owner"] != self.owner:
            return False
        if self.agent is not None and doc["agent"] != self.agent:
            return False
        if self.statuses is not None and doc["status"] not in self.statuses:
            return False
        updated = doc["updated_at"]
        if self.updated_after is not None and updated <= self.updated_after:
            return False
        if self.updated_before is not None and updated >= self.updated_before:
            return False
        if self.cursor is not None and (updated, doc["id"]) >= self.cursor:
            return False
        meta = doc["metadata"]
        return all(
            key in meta and _json.canonical(meta[key]) == value for key, value in self.metadata
        )

    def page(self, docs: Iterable[Doc], now: int) -> Page:
        """Filter, order and cut a page from documents held in memory (memory and file stores)."""
        chosen = sorted(
            (d for d in docs if self.matches(d, now)),
            key=lambda d: (d["updated_at"], d["id"]),
            reverse=True,
        )[: self.limit + 1]
        headers = listed_headers(chosen[: self.limit])
        if len(chosen) <= self.limit:
            return Page(sessions=headers, next_cursor=None)
        # the cursor is the page's last document, even one that could not be shown
        tail = chosen[self.limit - 1]
        return Page(sessions=headers, next_cursor=encode_cursor(tail["updated_at"], tail["id"]))


def make_page(headers: list[SessionHeader], limit: int) -> Page:
    """Cut ``limit + 1`` fetched headers into a page and the cursor of the next one."""
    if len(headers) <= limit:
        return Page(sessions=headers, next_cursor=None)
    headers = headers[:limit]
    tail = headers[-1]
    assert tail.updated_at is not None
    return Page(sessions=headers, next_cursor=encode_cursor(to_micros(tail.updated_at), tail.id))


def encode_cursor(updated_at: int, session_id: str) -> str:
    raw = _json.dumps([updated_at, session_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    if not isinstance(cursor, str):
        raise InvalidRequest(f"cursor must be the str a previous page returned, not {cursor!r}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, session_id = _json.loads(raw)
        if not isinstance(updated_at, int) or isinstance(updated_at, bool):
            raise ValueError("bad timestamp")
        if not _MIN_MICROS <= updated_at <= _MAX_MICROS:  # no stored session is outside
            raise ValueError("timestamp out of range")
        return updated_at, validate_session_id(session_id)
    except (ValueError, TypeError, binascii.Error, _json.JSONDecodeError) as exc:
        raise InvalidRequest(
            f"cursor {cursor[:40]!r} is not a cursor this store returned; pass the "
            "next_cursor of a previous page unchanged, or no cursor for the first page"
        ) from exc
    except Exception as exc:  # InvalidSessionId: the cursor was tampered with
        raise InvalidRequest(f"cursor {cursor[:40]!r} is not valid ({exc})") from exc


def build_list_query(
    *,
    owner: str | None = None,
    agent: str | None = None,
    status: str | SessionStatus | Collection[str | SessionStatus] | None = None,
    metadata: Mapping[str, Any] | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> ListQuery:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be an int from 1 to {MAX_PAGE_SIZE}, not {_short(limit)}")
    check_text("owner", owner)
    check_text("agent", agent)
    statuses: frozenset[str] | None = None
    if status is not None:
        if isinstance(status, (str, SessionStatus)):
            raw: list[object] = [status]
        elif isinstance(status, Collection):
            raw = list(status)
        else:
            raise InvalidRequest(f"status must be a status or a list of them, not {status!r}")
        values = [s.value if isinstance(s, SessionStatus) else s for s in raw]
        bad = [v for v in values if not isinstance(v, str) or v not in _STATUSES]
        if bad or not values:
            raise InvalidRequest(
                f"status {bad or '[]'!r} is not a status; use one or several of "
                f"{sorted(_STATUSES)}, or None for any status"
            )
        statuses = frozenset(str(v) for v in values)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidRequest(f"metadata must be a dict of key: value or None, not {metadata!r}")
    pairs: list[tuple[str, str]] = []
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise InvalidRequest(f"metadata filter keys must be str, not {key!r}")
        pairs.append((key, _json.canonical(value, what=f"metadata filter {key!r}")))
        _json.dumps(key, what="a metadata filter key")  # valid Unicode, as stored keys are
    after = _bound_micros("updated_after", updated_after)
    before = _bound_micros("updated_before", updated_before)
    return ListQuery(
        owner=owner,
        agent=agent,
        statuses=statuses,
        metadata=tuple(sorted(pairs)),
        updated_after=after,
        updated_before=before,
        limit=limit,
        cursor=None if cursor is None else decode_cursor(cursor),
    )


def metadata_index(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, canonical value) for every top-level metadata key: what a store indexes."""
    return [(key, _json.canonical(value)) for key, value in metadata.items()]
