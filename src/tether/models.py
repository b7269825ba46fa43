"""The public data model: a session's header, its history items, and a page of a listing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from itertools import islice
from typing import Any, TypeVar, overload

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
)

from ._ids import new_session_id, validate_session_id
from .errors import CorruptSession
from .schema import schema

__all__ = [
    "HistoryItem",
    "KeyedItem",
    "Lease",
    "Page",
    "Session",
    "SessionHeader",
    "SessionStatus",
    "SharedHistory",
    "StoredItem",
]

HistoryItem = dict[str, Any]
"""One history item: a plain JSON object, so any framework's message dicts fit unchanged.

Any JSON object: a chat message (``role``, ``content``, ...) or a framework's item (``type``,
no ``role``). In :attr:`Session.history` the store adds ``seq`` and ``timestamp`` to each; the
exact item as stored is in :attr:`Session.items`.
"""


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One stored history item, exactly as given, with tether's bookkeeping beside it.

    ``item`` is the JSON object that was appended, nothing added and nothing removed (no
    ``seq``, no ``timestamp`` unless the item had its own): what a framework replays to its
    model. ``seq`` numbers it within the session, ``timestamp`` is when it was committed (ISO
    8601 UTC with microseconds, or the item's own ``timestamp`` string if it had one), and
    ``key`` is the item's optional key, unique within its session (see :class:`KeyedItem`).
    """

    seq: int
    timestamp: str
    key: str | None
    item: dict[str, Any]


@dataclass(frozen=True, slots=True)
class KeyedItem:
    """A history item to append under a key (a checkpoint id, an event id, an entry id).

    Pass it wherever items are appended (``commit(append=)``, ``append``, ``replace_history``,
    ``replace_tail``) in place of the plain dict. The key is unique within the session (a
    write that would store it twice raises :class:`~tether.errors.DuplicateItemKey`) and the
    item can be read back by key at a cost that does not grow with the history
    (``items_by_key``). A key is a str of 1 to 256 characters, valid Unicode, no NUL.
    """

    key: str
    item: Mapping[str, Any]


_T = TypeVar("_T")


class Prefix(Sequence[_T]):
    """The first ``length`` entries of a list that only ever grows at its end, read only.

    The runtime's cache extends its lists in place as a session gets new items; a session it
    handed out keeps seeing the items it was given, however long the list grows, without the
    list being copied (which at 100,000 items cost more than the store's whole turn).
    """

    __slots__ = ("_base", "_len")

    def __init__(self, base: list[_T], length: int) -> None:
        self._base = base
        self._len = length

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> _T: ...
    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...
    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._len)
            if step < 0:  # indices() may give stop -1, which a list reads as its last item
                return self._base[: self._len][index]
            return self._base[start:stop:step]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("history index out of range")
        return self._base[index]

    def __iter__(self) -> Iterator[_T]:
        return islice(self._base, self._len)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, Prefix)):
            return len(other) == self._len and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))

    def __reduce__(self) -> tuple[type[list[_T]], tuple[list[_T]]]:
        return list, (list(self),)  # a copy or a pickle of it is a plain list


class SharedHistory(Prefix[HistoryItem], MutableSequence[HistoryItem]):
    """``Session.history`` as :class:`~tether.Sessions` hands it out: a list-like sequence.

    It shares the runtime cache's list of the session's items (so a turn costs the same at 10
    and at 100,000 items) and copies it, once, the first time it is changed: changing it never
    changes the cache, nor any other session the runtime returned. Reading it is reading a
    list (``len``, indexing, slicing, iteration, ``==`` a list); ``list(session.history)`` is a
    plain list. The items themselves are shared: treat them as read-only, as with any loaded
    session.
    """

    __slots__ = ("_own",)

    def __init__(self, base: list[HistoryItem], length: int | None = None) -> None:
        super().__init__(base, len(base) if length is None else length)
        self._own: list[HistoryItem] | None = None

    def shared(self) -> tuple[list[HistoryItem], int]:
        """(the list this history reads, how many of its first items are this history's):
        the cache's list, which only grows at its end, until this history is changed (then
        its own copy). Read it, never change it."""
        return self._base, self._len

    def _mine(self) -> list[HistoryItem]:
        """The list this history writes to: a copy of the shared prefix, made once."""
        own = self._own
        if own is None:
            own = self._own = self._base[: self._len]
            self._base = own  # reads now see the copy (and its changes)
        return own

    def _sync(self) -> None:
        assert self._own is not None
        self._len = len(self._own)

    @overload
    def __setitem__(self, index: int, value: HistoryItem) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[HistoryItem]) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        self._mine()[index] = value
        self._sync()

    def __delitem__(self, index: int | slice) -> None:
        del self._mine()[index]
        self._sync()

    def insert(self, index: int, value: HistoryItem) -> None:
        self._mine().insert(index, value)
        self._sync()

    def append(self, value: HistoryItem) -> None:
        self._mine().append(value)
        self._sync()

    def extend(self, values: Iterable[HistoryItem]) -> None:
        self._mine().extend(values)
        self._sync()

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        self._mine().sort(key=key, reverse=reverse)

    def copy(self) -> list[HistoryItem]:
        return list(self)

    def __add__(self, other: Iterable[HistoryItem]) -> list[HistoryItem]:
        return [*self, *other]

    def __radd__(self, other: Iterable[HistoryItem]) -> list[HistoryItem]:
        return [*other, *self]


def stored_from_records(session_id: str, records: Iterable[Mapping[str, Any]]) -> list[StoredItem]:
    """The :class:`StoredItem` of each stored row (schema 3, or an older row upgraded)."""
    stored: list[StoredItem] = []
    try:
        for record in records:
            if _is_legacy(record):
                item = {k: v for k, v in record.items() if k not in ("seq", "timestamp")}
                key = None
            else:
                item, key = record["item"], record.get("key")
            stored.append(StoredItem(record["seq"], record["timestamp"], key, item))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CorruptSession(session_id, f"a history item cannot be read ({exc!r})") from exc
    return stored


def _is_legacy(record: Mapping[str, Any]) -> bool:
    """A row stored before schema 3: the item itself with ``seq`` / ``timestamp`` merged in.
    Such rows always had a str ``role``; a schema-3 row never has one at its top level."""
    return "role" in record or not isinstance(record.get("item"), dict)


class SessionStatus(str, Enum):
    """Where a session stands. Stores keep it; the runtime decides the moves between them."""

    NEW = "new"
    RUNNING = "running"
    HIBERNATED = "hibernated"
    WAITING = "waiting"
    FINISHED = "finished"
    ERROR = "error"
    SUSPENDED = "suspended"
    ARCHIVED = "archived"


class SessionHeader(BaseModel):
    """Everything about a session except its history. ``list`` returns these.

    The store owns ``version``, ``schema_version``, ``created_at``, ``updated_at``,
    ``last_seq`` and ``history_len``: whatever a caller puts there is replaced on ``create``.
    """

    # validate_assignment: ``session.status = "bogus"`` raises pydantic's ValidationError at
    # the assignment, as the same value would at construction (docs/model.md). Store calls
    # check every field again anyway: model_construct() skips validation.
    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_assignment=True)

    id: str = Field(default_factory=new_session_id)
    owner: str | None = None
    """The user or tenant the session belongs to."""
    agent: str | None = None
    """The name of the agent definition that runs the session."""
    status: SessionStatus = SessionStatus.NEW
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free JSON about the session (channel, title, tags). ``list`` filters on its keys."""
    state: dict[str, Any] = Field(default_factory=dict)
    """The agent's key-value state."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Run options: by convention ``model``, ``system_prompt``, ``cwd``, and any others."""
    parent_id: str | None = None
    """The session this one was forked from."""
    fork_seq: int | None = None
    """The last ``seq`` of the parent's history that this fork includes."""
    version: int = 0
    """0 before the session is stored; 1 after ``create``; +1 on every write."""
    schema_version: int = Field(default_factory=lambda: schema.current)
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    """After this moment the session behaves exactly as if it did not exist."""
    last_seq: int = 0
    """The ``seq`` of the newest history item (0 when there never was one)."""
    history_len: int = 0
    """How many items the whole history holds, whatever window was loaded."""
    lease_owner: str | None = None
    """Who holds (or last held) the session's lease; see :meth:`Store.claim`."""
    lease_expires_at: AwareDatetime | None = None
    """When that lease ends. The lease is live only while this is in the future."""
    lease_fence: int = 0
    """The fencing number of the newest claim: it grows with every new claim."""
    _stored_schema_version: int | None = PrivateAttr(default=None)

    @property
    def stored_schema_version(self) -> int:
        """The schema version the store holds the session at.

        A session stored by an older tether is upgraded when read (``schema_version`` is then
        the current one) and written back on its next write; until then this is the old one.
        """
        return self._stored_schema_version or self.schema_version

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return validate_session_id(value)

    @field_validator("parent_id")
    @classmethod
    def _check_parent_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_session_id(value)

    @property
    def first_seq(self) -> int:
        """The ``seq`` of the oldest item in the whole history (``last_seq + 1`` when empty)."""
        return self.last_seq - self.history_len + 1

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _entry(stored: StoredItem) -> HistoryItem:
    """``{**stored.item, "seq": ..., "timestamp": ...}``: the same dict (same keys, same
    order), from a plain dict's copy and two stores, which take about two thirds of the time."""
    item = stored.item
    entry = dict.copy(item) if type(item) is dict else {**item}
    entry["seq"] = stored.seq
    entry["timestamp"] = stored.timestamp
    return entry


class _Views:
    """The ``history`` entries a session's stored items had when loaded, built once.

    :attr:`Session.items` compares ``history`` with them to see whether it was edited (an edit
    in place of an entry dict included), which costs one comparison per item and builds
    nothing. Cached per stored-items list, by identity: a new ``_items`` gets new views. It
    compares equal to any other (or to none: the default before the first access), so a
    session's equality stays its fields and items, as before."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[Sequence[StoredItem], list[HistoryItem]] | None = None

    def of(self, stored: Sequence[StoredItem]) -> list[HistoryItem]:
        cached = self._cached
        if cached is None or cached[0] is not stored:
            views = [_entry(s) for s in stored]
            cached = self._cached = (stored, views)
        return cached[1]

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, _Views)

    __hash__ = None  # type: ignore[assignment]


class Session(SessionHeader):
    """A session: its header plus the loaded window of its history (all of it by default)."""

    history: list[HistoryItem] = Field(default_factory=list)
    # The stored items: ``_exact`` once built; until then a load leaves the decoded rows in
    # ``_records`` and the items are built at the first read (a caller that only wants
    # ``history``, or only the items' dicts, never pays for a StoredItem per item).
    _exact: Sequence[StoredItem] | None = PrivateAttr(default=None)
    _records: list[dict[str, Any]] | None = PrivateAttr(default=None)
    _views: _Views | None = PrivateAttr(default=None)

    @field_validator("history", mode="before")
    @classmethod
    def _plain_history(cls, value: Any) -> Any:
        # a history the runtime handed out, given back (Session(history=other.history))
        return list(value) if isinstance(value, Prefix) else value

    @field_serializer("history", mode="wrap")
    def _dump_history(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        return handler(value if type(value) is list else list(value))

    @property
    def _items(self) -> Sequence[StoredItem] | None:
        """The stored items as loaded (None for a session built by hand), built on first use."""
        if self._exact is None and self._records is not None:
            self._exact = stored_from_records(self.id, self._records)
            self._records = None
        return self._exact

    @_items.setter
    def _items(self, value: Sequence[StoredItem] | None) -> None:
        self._exact = value
        self._records = None

    def __eq__(self, other: object) -> bool:
        # the items still undecoded on one side and built on the other are the same items
        if isinstance(other, Session):
            _ = self._items, other._items
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def items(self) -> list[StoredItem]:
        """The loaded window of the history as stored: each item exactly as it was given.

        A store fills it when it loads the session; :attr:`history` is the same window with
        ``seq`` and ``timestamp`` merged into copies of the items (the view tether had before
        this one, kept for existing code). Both views share nested values: treat them as read
        only. If ``history`` was changed since (an item edited, added or removed), the items
        follow it: an item that no longer matches its history entry is that entry without
        ``seq`` and ``timestamp`` (keeping its key if its seq is the same). For a session built
        by hand, the items are ``history`` without ``seq`` and ``timestamp``.
        """
        found = self._items
        stored: Sequence[StoredItem] = found if found is not None else []
        if self._views is None:
            self._views = _Views()
        views = self._views.of(stored)
        if self.history == views:  # unchanged since loaded: one comparison, no dict built
            return list(stored)
        out: list[StoredItem] = []
        for index, entry in enumerate(self.history):
            known = stored[index] if index < len(stored) else None
            if known is not None and entry == views[index]:
                out.append(known)
                continue
            seq = entry.get("seq")
            out.append(
                StoredItem(
                    seq=seq,  # type: ignore[arg-type]  # restore checks both
                    timestamp=entry.get("timestamp"),  # type: ignore[arg-type]
                    key=known.key if known is not None and known.seq == seq else None,
                    item={k: v for k, v in entry.items() if k not in ("seq", "timestamp")},
                )
            )
        return out

    @property
    def header(self) -> SessionHeader:
        return SessionHeader.model_construct(
            **{name: getattr(self, name) for name in SessionHeader.model_fields}
        )


class Lease(BaseModel):
    """The right to run a session, held by one owner until ``expires_at``.

    Returned by :meth:`Store.claim` and :meth:`Store.renew`; pass it to ``commit(lease=...)``
    so that a runner that lost its lease can never write. ``fence`` grows with every new claim
    of the session, so any system downstream can refuse work stamped with an older fence.
    """

    model_config = ConfigDict(frozen=True)

    session_id: str
    owner: str
    token: str
    """Opaque proof of this claim. Keep it to yourself: listings never show it."""
    fence: int
    expires_at: AwareDatetime


class Page(BaseModel):
    """One page of :meth:`Store.list`: headers newest first, and the cursor of the next page."""

    sessions: list[SessionHeader]
    next_cursor: str | None = None
    """Pass as ``cursor=`` to get the next page; ``None`` when this is the last page."""
