"""The runtime's process-local session cache (no I/O): what a long-running worker holds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from . import _core
from .models import HistoryItem, Prefix, Session, SharedHistory, StoredItem

__all__ = ["ChangeMark", "SessionCache", "after_own_write", "detach", "header_only"]

ChangeMark = tuple[Hashable, int]
"""A store's ``_change_mark()``: what others wrote (opaque) and the count of this store
object's own writes."""


def after_own_write(mark: ChangeMark) -> ChangeMark:
    """The store's change mark after one more write of its own (a commit this process made
    from ``mark``): it matches the store's later only if that write was the one since."""
    return mark[0], mark[1] + 1


_LEASE_FIELDS = ("lease_owner", "lease_fence", "lease_expires_at")
"""The header fields a write may change without a new version (claim, renew, release)."""


class SessionCache:
    """The most recently used sessions, whole, up to ``size`` of them (0 disables it).

    A cached session is refreshed by asking the store only for what came after its last
    ``seq`` (and is read whole again if anyone but this process wrote since), so a worker's
    per-turn cost does not grow with the length of the history: the new
    items are added at the end of a history list (and an items list) the cache alone holds,
    never by copying them. Callers get views of those lists' first items (see :func:`detach`),
    which later additions do not change.

    An entry may carry the store's change mark taken before the read it came from
    (:meth:`current`): while the store's mark is the same, nothing was written since and the
    entry is served without asking the store.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("cache size must be >= 0")
        self.size = size
        self._entries: OrderedDict[str, Session] = OrderedDict()
        # The history and items lists this cache made itself, by session id: only those are
        # extended in place (a list a store returned may be the store's own, as the memory
        # store's is).
        self._owned: dict[str, tuple[list[HistoryItem], list[StoredItem]]] = {}
        # The store's change mark each entry was read at (a session that expires has none).
        self._marks: dict[str, ChangeMark] = {}
        # Extending in place is check-then-act: two threads refreshing one session through a
        # sync Sessions must not both extend the same list.
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Session | None:
        session = self._entries.get(session_id)
        if session is not None:
            self._entries.move_to_end(session_id)
        return session

    def current(self, session_id: str, mark: ChangeMark | None) -> Session | None:
        """The entry for ``session_id`` if the store's change ``mark`` (just taken) is the one
        it was read at: nothing was written to the store since, so it is as the store holds it.
        None when it is not known to be (no entry, no mark, or a write since)."""
        if mark is None or self._marks.get(session_id) != mark:
            return None
        return self.get(session_id)

    def put(self, session: Session, mark: ChangeMark | None = None) -> None:
        """Keep ``session``: read from the store at its change ``mark`` (taken before the read),
        if it has one."""
        if self.size == 0:
            return
        with self._lock:
            owned = self._owned.get(session.id)
            if owned is not None and owned[0] is not session.history:
                del self._owned[session.id]
            self._entries[session.id] = session
            self._entries.move_to_end(session.id)
            self._set_mark(session, mark)
            self._evict()

    def _set_mark(self, session: Session, mark: ChangeMark | None) -> None:
        # a session that expires is never served unread: the read is what sees it expire
        if mark is None or session.expires_at is not None:
            self._marks.pop(session.id, None)
        else:
            self._marks[session.id] = mark

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self.size:
            evicted, _ = entries.popitem(last=False)
            self._owned.pop(evicted, None)
            self._marks.pop(evicted, None)

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._entries.pop(session_id, None)
            self._owned.pop(session_id, None)
            self._marks.pop(session_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._owned.clear()
            self._marks.clear()

    def merge(self, cached: Session, fresh: Session, written: int | None = None) -> Session | None:
        """``cached`` brought up to date by ``fresh`` (loaded with ``after=cached.last_seq``).

        ``written`` is the version this process's own write (at ``cached.version``) produced,
        if it made one. None when the two cannot be joined: the history was replaced, items
        are missing, the session was deleted and created again, or anyone else wrote since
        (a ``replace_tail`` reuses seqs, so what came after ``last_seq`` need not be all that
        changed); the caller then loads the session whole. The result is not put in the cache.
        """
        same = fresh.created_at == cached.created_at
        if same and fresh.version == cached.version and fresh.last_seq == cached.last_seq:
            # nothing written since; a claim, renewal or release changes the lease fields
            # without a new version, so those are taken from what was just read
            if (
                fresh.lease_fence == cached.lease_fence
                and fresh.lease_owner == cached.lease_owner
                and fresh.lease_expires_at == cached.lease_expires_at
            ):
                return cached  # the usual case, said without building a dict
            moved = {
                name: getattr(fresh, name)
                for name in _LEASE_FIELDS
                if getattr(fresh, name) != getattr(cached, name)
            }
            return _copy(cached, moved) if moved else cached
        added = len(fresh.history)
        joined = (
            same
            and written is not None
            and fresh.version == written == cached.version + 1
            and fresh.first_seq == cached.first_seq
            and fresh.last_seq - cached.last_seq == added
            and fresh.history_len == cached.history_len + added
        )
        if not joined:
            return None
        with self._lock:
            history, items = self._extensible(cached)
            history.extend(fresh.history)
            new = fresh._items
            items.extend(new if new is not None else fresh.items)
        merged = _copy(fresh, {"history": history})
        _set_items(merged, items)
        return merged

    def extend(self, cached: Session, fields: dict[str, Any], records: list[_core.Doc]) -> Session:
        """``cached`` after this process's own commit at its version, built from what the
        commit stamped (``_core.stamped_fields``: the new header's fields and the decoded new
        rows) instead of read back: the new items are added at the end of the lists this cache
        holds, as :meth:`merge` adds them. The result is put in the cache (as :meth:`put`).

        If ``cached`` had a change mark, the result's is that mark after one write of this
        store object's, the commit: it matches the store's later only if that commit was the
        one write since, by anyone."""
        history_new, items_new = _core.item_views(cached.id, records)
        with self._lock:
            history, items = self._extensible(cached)
            history.extend(history_new)
            items.extend(items_new)
            fields["history"] = history
            extended = _extended(cached, fields, items)
            if self.size:  # put(): the lists are this cache's own, so they stay owned
                entries = self._entries
                entries[cached.id] = extended
                entries.move_to_end(cached.id)
                mark = self._marks.get(cached.id)
                self._set_mark(extended, None if mark is None else after_own_write(mark))
                self._evict()
        return extended

    def _extensible(self, cached: Session) -> tuple[list[HistoryItem], list[StoredItem]]:
        """The lists of ``cached`` that this cache may extend in place (under the lock).

        Not ours to extend (the store's list), or a concurrent refresh of this entry extended
        ours already: start from copies of what this entry holds, once.
        """
        owned = self._owned.get(cached.id)
        length = cached.history_len
        if (
            owned is None
            or owned[0] is not cached.history
            or owned[1] is not _private(cached).get("_exact")
            or len(owned[0]) != length
            or len(owned[1]) != length
        ):
            stored = cached._items
            items = list(stored) if stored is not None else cached.items
            owned = (list(cached.history[:length]), items[:length])
            self._owned[cached.id] = owned
        return owned


_SESSION_FIELDS = frozenset(Session.__pydantic_fields__)
_SESSION_PRIVATE = dict.fromkeys(Session.__private_attributes__)
"""A new Session's private attributes as ``construct_trusted`` sets them: each one's default,
None for every one of them (tests/test_runtime_trim_cache.py checks)."""


def _extended(cached: Session, fields: dict[str, Any], items: list[StoredItem]) -> Session:
    """``construct_trusted(Session, fields)`` holding ``items`` (as :func:`_set_items` sets
    them), built directly when ``cached`` is a plain :class:`Session`: ``fields`` are then its
    own fields (``_core.stamped_fields`` copies them from its dict), so neither the names are
    compared nor the private defaults looked up again (1.5 µs of a cached turn's commit)."""
    if type(cached) is not Session or len(fields) != len(_SESSION_FIELDS):
        extended = _core.construct_trusted(Session, fields)
        _set_items(extended, items)
        return extended
    private = _SESSION_PRIVATE.copy()
    private["_exact"] = items
    return _core.assembled(Session, fields, set(_SESSION_FIELDS), None, private)


def _private(session: Session) -> dict[str, Any]:
    """``session``'s private attributes, read directly: pydantic's attribute access to each
    costs a few µs, and a cached turn reads and sets several."""
    private = session.__pydantic_private__
    assert private is not None  # a Session always has its private attributes
    return private


def _set_items(session: Session, items: list[StoredItem]) -> None:
    """``session._items = items`` (its decoded items, no rows left to decode), set directly."""
    private = _private(session)
    private["_exact"] = items
    private["_records"] = None


def _copy(session: Session, update: dict[str, object]) -> Session:
    """``session.model_copy(update=update)`` with fresh private attributes (its items as they
    are, no history views), built directly: a turn makes two of these, and pydantic's copy and
    its private-attribute assignments were a tenth of a cached turn."""
    fields = session.__dict__.copy()  # a copy and an update: half the time of {**a, **b}
    fields.update(update)
    fields_set = session.__pydantic_fields_set__.copy()
    fields_set.update(update)
    return _copied(session, fields, fields_set)


def _copied(session: Session, fields: dict[str, Any], fields_set: set[str]) -> Session:
    """A copy of ``session`` holding ``fields`` (``fields_set`` set), its extras copied, with
    fresh private attributes: its items as they are, no history views."""
    extra = session.__pydantic_extra__
    private = session.__pydantic_private__
    private = {} if private is None else private.copy()
    private["_views"] = None  # views are built from the copy's own items when asked for
    extra = None if extra is None else dict(extra)
    return _core.assembled(type(session), fields, fields_set, extra, private)


def detach(session: Session) -> Session:
    """A copy a caller may change without changing the cache.

    The header's JSON fields are copied (one JSON round trip for the three: the cache holds
    only headers a store returned or a commit stamped, whose values are JSON already). The
    history is a :class:`~tether.models.SharedHistory` over the cache's list: no item is
    copied (at 100,000 items a copy costs more than the store's turn), and the first change a
    caller makes to it copies it, so the cache never sees it. The items are shared: treat
    loaded items as read-only.
    """
    # _copy(session, update) with the update known, and _copied inlined: built in one pass
    # (a cached turn makes two)
    fields = session.__dict__.copy()
    fields.update(_core.trusted_json_fields(session))
    history = session.history
    length = len(history)
    if type(history) is not list:  # a Prefix (or a history a hook set): a list of its own
        history = list(history)
    fields["history"] = SharedHistory(history, length)
    private = session.__pydantic_private__
    private = {} if private is None else private.copy()
    private["_views"] = None  # views are built from the copy's own items when asked for
    stored = private.get("_exact")
    if type(stored) is list:  # perhaps a list the cache extends: the caller's part only
        private["_exact"] = Prefix(stored, len(stored))
    extra = session.__pydantic_extra__
    return _core.assembled(
        type(session),
        fields,
        session.__pydantic_fields_set__ | _DETACHED,
        None if extra is None else dict(extra),
        private,
    )


_DETACHED = frozenset(("metadata", "state", "options", "history"))
"""The fields :func:`detach` replaces (set, as ``model_copy(update=...)`` marks them)."""


def header_only(session: Session) -> Session:
    """A copy of ``session``'s header with no history loaded, as ``load(id, last=0)`` gives
    (``history_len`` and ``last_seq`` still describe the whole history)."""
    update: dict[str, object] = _core.trusted_json_fields(session)
    update["history"] = []
    copy = _copy(session, update)
    private = _private(copy)
    private["_exact"] = private["_records"] = None
    return copy
