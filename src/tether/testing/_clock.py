"""A clock tests can move, so lease and expiry clauses need no sleeping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["FakeClock"]


class FakeClock:
    """Real time plus an offset that only :meth:`advance` moves.

    It keeps ticking (so ``updated_at`` still orders writes) but can jump ahead: pass it as a
    store's ``clock=`` and call ``advance(61)`` to be a minute later.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
