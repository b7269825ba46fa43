"""Header documents, with no I/O: a session header to and from its stored document, the
documents ``create`` and ``restore`` write, and the sessions and headers a load or a listing
returns (upgraded from older schemas, :class:`~tether.errors.CorruptSession` if unreadable).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .._ids import validate_session_id
from .._time import from_micros, to_micros
from ..errors import (
    CorruptSession,
    DuplicateItemKey,
    InvalidRequest,
    InvalidSessionData,
    TetherError,
)
from ..models import (
    Session,
    SessionHeader,
    SessionStatus,
    SharedHistory,
    StoredItem,
)
from ..schema import schema
from .checks import (
    DOC_FIELDS,
    JSON_FIELDS,
    STATUSES,
    Doc,
    check_int,
    check_item_key,
    check_restore_args,
    check_text,
    check_time,
    json_copy,
    short,
)
from .items import PreparedItems, history_view, row, row_fields, upgrade_items
from .rules import check_runtime_block, check_writable, items_kept, upgrade_doc

log = logging.getLogger("tether.stores")

# --- headers -----------------------------------------------------------------------------------


def _opt_micros(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def _status_text(status: SessionStatus | str) -> str:
    # a model's status is a SessionStatus (its .value is the text); a str is checked
    return status.value if type(status) is SessionStatus else SessionStatus(status).value


def header_to_doc(header: SessionHeader) -> Doc:
    return {
        "id": header.id,
        "owner": header.owner,
        "agent": header.agent,
        "status": _status_text(header.status),
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


TIME_FIELDS = ("created_at", "updated_at", "expires_at", "lease_expires_at")
"""The header's times: datetimes on a model, integer microseconds in a document."""


_STATUS_OF = {status.value: status for status in SessionStatus}


def _status(value: Any) -> SessionStatus:
    """``SessionStatus(value)``: a dict lookup for a stored text (the Enum call costs about
    twenty times as much); anything else goes through the Enum call, which raises as before."""
    try:
        return _STATUS_OF[value]
    except (KeyError, TypeError):
        return SessionStatus(value)


@lru_cache(maxsize=1024)
def _moment(micros: int) -> datetime:
    # a loaded header's times recur (``created_at`` on every load of a session, every time
    # of a header loaded with nothing new): datetimes are immutable, so one may be shared
    return from_micros(micros)


def _time(value: Any) -> datetime | None:
    """``from_micros`` of a stored time (None stays None), cached for ints: only an int is
    looked up, so anything else raises what ``from_micros`` raises, as before."""
    if value is None:
        return None
    return _moment(value) if type(value) is int else from_micros(value)


def fields_from_doc(doc: Doc) -> dict[str, Any]:
    fields = dict(doc)
    fields.pop("lease_token", None)  # the holder's secret: never in a header or a listing
    fields["status"] = _status(doc["status"])
    get = doc.get
    fields["created_at"] = _time(get("created_at"))
    fields["updated_at"] = _time(get("updated_at"))
    fields["expires_at"] = _time(get("expires_at"))
    fields["lease_expires_at"] = _time(get("lease_expires_at"))
    if "lease_fence" in fields:  # the models' field order (SessionHeader declares it last)
        fields["lease_fence"] = fields.pop("lease_fence")
    return fields


_M = TypeVar("_M", bound=BaseModel)


_FIELDS_SET: dict[type[BaseModel], tuple[dict[str, Any], set[str]]] = {}
"""Per model class, (its ``__pydantic_fields__``, the set of their names): a copy of the set
is every instance's ``model_fields_set``, made without hashing the names again."""


def construct_trusted(
    cls: type[_M], fields: dict[str, Any], private: dict[str, Any] | None = None
) -> _M:
    """``cls.model_construct(**fields)`` for trusted data that holds every field, faster.

    pydantic's ``model_construct`` walks every field (aliases, defaults) on each call, which
    was about half the cost of listing 50 headers. When ``fields`` has exactly the model's
    fields, there is nothing to fill in, so the instance is set up directly, as
    ``model_construct`` itself does (tests/test_core.py checks the two agree field for field);
    anything else goes through ``model_construct``. ``private`` sets private attributes
    (``{"_records": rows}``) without pydantic's per-assignment ``__setattr__``.
    """
    names = cls.__pydantic_fields__
    if fields.keys() != names.keys():
        model = cls.model_construct(**fields)
        for name, value in (private or {}).items():
            setattr(model, name, value)
        return model
    known = _FIELDS_SET.get(cls)
    if known is None or known[0] is not names:  # first use (or the class was rebuilt)
        known = _FIELDS_SET[cls] = (names, set(names))
    defaults = private_defaults(cls)
    if private:
        if defaults is None or not private.keys() <= defaults.keys():
            raise TypeError(f"{cls.__name__} has no private attribute among {sorted(private)}")
        defaults.update(private)
    return assembled(cls, fields, known[1].copy(), None, defaults)


def assembled(
    cls: type[_M],
    fields: dict[str, Any],
    fields_set: set[str],
    extra: dict[str, Any] | None,
    private: dict[str, Any] | None,
) -> _M:
    """An instance of ``cls`` set up from its parts as pydantic lays a model out (its
    ``__dict__``, ``__pydantic_fields_set__``, ``__pydantic_extra__``,
    ``__pydantic_private__``), nothing checked: the one place that layout is written, for
    :func:`construct_trusted` and the runtime cache's copies of trusted sessions."""
    model = cls.__new__(cls)
    _set(model, "__dict__", fields)
    _set(model, "__pydantic_fields_set__", fields_set)
    _set(model, "__pydantic_extra__", extra)
    _set(model, "__pydantic_private__", private)
    return model


_set = object.__setattr__


_PLAIN_DEFAULTS: dict[type[BaseModel], dict[str, Any]] = {}
"""Per model class, its private attributes' defaults when every one is None, a bool, an int
or a str (nothing a copy could share): a plain copy of this dict is then what
``get_default()`` of each would give, without pydantic's per-attribute deep copy."""


def private_defaults(cls: type[BaseModel]) -> dict[str, Any] | None:
    """A new ``__pydantic_private__`` for ``cls`` holding each private attribute's default
    (None when it has none), as ``model_construct`` sets it up."""
    private = cls.__private_attributes__
    if not private:
        return None
    plain = _PLAIN_DEFAULTS.get(cls)
    if plain is None:
        defaults = {name: attr.get_default() for name, attr in private.items()}
        immutable = all(
            attr.default_factory is None and type(value) in (type(None), bool, int, str)
            for attr, value in zip(private.values(), defaults.values(), strict=True)
        )
        if not immutable:
            return defaults
        plain = _PLAIN_DEFAULTS[cls] = defaults
    return dict(plain)


def doc_to_header(doc: Doc) -> SessionHeader:
    """Build a header from a document the store wrote itself (trusted, not re-validated)."""
    return construct_trusted(SessionHeader, fields_from_doc(doc))


UNDECODABLE = (KeyError, ValueError, TypeError, OverflowError, AttributeError)
"""What reading a stored document that no tether wrote raises (a row edited by hand, say)."""


def listed_header(doc: Doc) -> SessionHeader:
    """A listing's header from a stored document, upgraded; :class:`CorruptSession` (never a
    ``ValueError`` / ``OverflowError``) if the document cannot be read."""
    try:
        return doc_to_header(upgrade_doc(doc))
    except UNDECODABLE as exc:
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


def readable_session(doc: Doc, history: list[Doc]) -> Session:
    """The session a load returns: upgraded in memory if it was stored by an older tether.

    Raises :class:`~tether.errors.UnsupportedSchemaVersion` if a newer tether stored it.
    """
    stored = int(doc["schema_version"])
    schema.check(str(doc["id"]), stored)  # check_writable, its version read once
    if stored != schema.current:  # needs_upgrade
        doc = upgrade_doc(doc)
        history = upgrade_items(history, stored)
    try:
        session = make_session(doc, history)
    except UNDECODABLE as exc:
        raise CorruptSession(str(doc.get("id")), f"its header cannot be read ({exc!r})") from exc
    if stored != session.schema_version:
        session.__pydantic_private__["_stored_schema_version"] = stored  # type: ignore[index]
    return session


def make_session(doc: Doc, records: list[Doc]) -> Session:
    """The session of a header document and its stored rows: ``history`` built now, the
    exact items (``Session.items``) when first read, from the rows kept for that."""
    fields = fields_from_doc(doc)
    fields["history"] = history_view(str(doc.get("id")), records)
    return construct_trusted(Session, fields, {"_records": records})


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
        SessionHeader.model_validate(fields_from_doc(schema.upgrade_header(dict(doc))))
    except (ValidationError, *UNDECODABLE) as exc:
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


def checked_restore(
    session: Session, replace: object, expected_version: object
) -> tuple[Doc, PreparedItems]:
    """What ``restore(session, replace=, expected_version=)`` writes (:func:`restore_doc`),
    its arguments checked in the contract's order, before any I/O: every store's first step."""
    check_restore_args(replace, expected_version)
    return restore_doc(session)


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
    if not isinstance(history, (list, SharedHistory)):
        raise InvalidSessionData(f"history must be a list of item dicts, not {short(history)}")
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
        fields = row_fields(entry.seq, entry.timestamp, entry.key)
        encoded.append((entry.seq, row(fields, entry.item, offset)))
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
    if not isinstance(status, str) or status not in STATUSES:  # SessionStatus is a str
        raise InvalidSessionData(f"status {short(status)} is not one of {sorted(STATUSES)}")
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


def copied_fork(child: Session, parent: Session, at: int, now: datetime) -> Session:
    """A fork that copies, for a store that cannot share its parent's items: ``child`` with
    the parent's items up to ``at`` numbered from 1 (keys, commit times and item objects kept)
    and its header set as a fork made ``now``, ready for the store's ``restore``."""
    count = items_kept(header_to_doc(parent), at, "fork")
    items = [
        StoredItem(seq=seq, timestamp=item.timestamp, key=item.key, item=item.item)
        for seq, item in enumerate(parent.items[:count], 1)
    ]
    made = child.model_copy(
        update={
            "parent_id": parent.id,
            "fork_seq": at,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "last_seq": count,
            "history_len": count,
            "history": [
                {**item.item, "seq": item.seq, "timestamp": item.timestamp} for item in items
            ],
        }
    )
    made._items = items
    return made
