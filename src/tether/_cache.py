"""The runtime's process-local session cache (no I/O): what a long-running worker holds."""

from __future__ import annotations

from collections import OrderedDict

from . import _core
from .models import Session

__all__ = ["SessionCache"]


class SessionCache:
    """The most recently used sessions, whole, up to ``size`` of them (0 disables it).

    A cached session is refreshed by asking the store only for what came after its last
    ``seq``, so a worker's per-turn cost does not grow with the length of the history.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("cache size must be >= 0")
        self.size = size
        self._entries: OrderedDict[str, Session] = OrderedDict()

    def get(self, session_id: str) -> Session | None:
        session = self._entries.get(session_id)
        if session is not None:
            self._entries.move_to_end(session_id)
        return session

    def put(self, session: Session) -> None:
        if self.size == 0:
            return
        self._entries[session.id] = session
        self._entries.move_to_end(session.id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, session_id: str) -> None:
        self._entries.pop(session_id, None)

    def clear(self) -> None:
        self._entries.clear()

    @staticmethod
    def merge(cached: Session, fresh: Session) -> Session | None:
        """``cached`` brought up to date by ``fresh`` (loaded with ``after=cached.last_seq``).

        None when the two cannot be joined (the history was replaced, or items are missing):
        the caller then loads the session whole.
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
        history = cached.history + fresh.history
        return fresh.model_copy(update={"history": history})


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
