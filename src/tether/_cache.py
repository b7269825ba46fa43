"""The runtime's process-local session cache (no I/O): what a long-running worker holds."""

from __future__ import annotations

import threading
from collections import OrderedDict

from . import _core
from .models import HistoryItem, Session

__all__ = ["SessionCache"]


class SessionCache:
    """The most recently used sessions, whole, up to ``size`` of them (0 disables it).

    A cached session is refreshed by asking the store only for what came after its last
    ``seq``, so a worker's per-turn cost does not grow with the length of the history: the new
    items are added at the end of a history list the cache alone holds (callers get copies, see
    :func:`detach`), never by copying the history.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("cache size must be >= 0")
        self.size = size
        self._entries: OrderedDict[str, Session] = OrderedDict()
        # The history lists this cache made itself, by session id: only those are extended in
        # place (a list a store returned may be the store's own, as the memory store's is).
        self._owned: dict[str, list[HistoryItem]] = {}
        # Extending in place is check-then-act: two threads refreshing one session through a
        # sync Sessions must not both extend the same list.
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Session | None:
        session = self._entries.get(session_id)
        if session is not None:
            self._entries.move_to_end(session_id)
        return session

    def put(self, session: Session) -> None:
        if self.size == 0:
            return
        with self._lock:
            if self._owned.get(session.id) is not session.history:
                self._owned.pop(session.id, None)
            self._entries[session.id] = session
            self._entries.move_to_end(session.id)
            while len(self._entries) > self.size:
                evicted, _ = self._entries.popitem(last=False)
                self._owned.pop(evicted, None)

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._entries.pop(session_id, None)
            self._owned.pop(session_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._owned.clear()

    def merge(self, cached: Session, fresh: Session) -> Session | None:
        """``cached`` brought up to date by ``fresh`` (loaded with ``after=cached.last_seq``).

        None when the two cannot be joined (the history was replaced, or items are missing):
        the caller then loads the session whole. The result is not put in the cache.
        """
        if fresh.version == cached.version and fresh.last_seq == cached.last_seq:
            return cached
        joined = (
            fresh.first_seq == cached.first_seq
            and fresh.last_seq - cached.last_seq == len(fresh.history)
            and fresh.history_len == cached.history_len + len(fresh.history)
        )
        if not joined:
            return None
        with self._lock:
            history = cached.history
            if self._owned.get(cached.id) is not history or len(history) != cached.history_len:
                # not ours to extend (the store's list), or a concurrent refresh of this entry
                # extended it already: start from a copy of what this entry holds, once
                history = history[: cached.history_len]
                self._owned[cached.id] = history
            history.extend(fresh.history)
        merged = fresh.model_copy(update={"history": history})
        # the exact items follow the history (keys included); a new list, as a returned
        # session shares it (see detach), and without the views built for fresh's items alone
        old, new = cached._items, fresh._items
        merged._items = None if old is None or new is None else old + new
        merged._views = None
        return merged


def detach(session: Session) -> Session:
    """A copy a caller may change without changing the cache.

    The header's JSON fields are copied; the history list is new but its items are shared
    (copying every item would make each turn cost O(history)): treat loaded items as read-only.
    """
    update: dict[str, object] = {
        name: _core.json_copy(getattr(session, name), what=name) for name in _core.JSON_FIELDS
    }
    update["history"] = list(session.history)
    return session.model_copy(update=update)


def header_only(session: Session) -> Session:
    """A copy of ``session``'s header with no history loaded, as ``load(id, last=0)`` gives
    (``history_len`` and ``last_seq`` still describe the whole history)."""
    update: dict[str, object] = {
        name: _core.json_copy(getattr(session, name), what=name) for name in _core.JSON_FIELDS
    }
    update["history"] = []
    copy = session.model_copy(update=update)
    copy._items = None
    copy._views = None
    return copy
