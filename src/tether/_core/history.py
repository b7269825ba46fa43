"""Windows of a history, with no I/O: ``load(last=, after=, limit=)`` and ``iter_history`` pages."""

from __future__ import annotations

from collections.abc import Sequence

from .._ids import validate_session_id
from ..errors import (
    ConflictError,
)
from ..models import (
    HistoryItem,
    Session,
    SessionHeader,
)
from .checks import Doc, check_limit, check_window


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
