"""A store whose writes that add items are one method, async side; tools/unasync.py writes the
sync side from it.

``commit``, a stamped ``commit`` and ``append`` differ only in what they ask of one write: a
version to compare (``append`` names none) and what to report (the new version, or the whole
stamp). A store that does the write once, as ``_add`` returning the header document it wrote
and the rows of the new items, subclasses :class:`_AsyncAddingStore` and gets the three
protected methods from it: the key-value kit, the file store and SQLite do.
"""

from __future__ import annotations

from abc import abstractmethod

from .. import _core
from ..models import Lease
from .base import AsyncStore, CheckedItems


class _AsyncAddingStore(AsyncStore):
    """:meth:`_commit`, :meth:`_commit_stamped` and :meth:`_append` as calls of one :meth:`_add`."""

    @abstractmethod
    async def _add(
        self,
        session_id: str,
        expected_version: int | None,
        items: CheckedItems,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> tuple[_core.Doc, _core.PreparedItems]:
        """A commit (``expected_version`` None: a blind append); the header document it wrote
        and the rows of the new items, from inside the same write."""

    async def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        written, _ = await self._add(session_id, expected_version, items, changes, lease)
        return int(written["version"])

    async def _commit_stamped(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> _core.CommitStamp:
        written, rows = await self._add(session_id, expected_version, items, changes, lease)
        return _core.commit_stamp(written, rows)

    async def _append(self, session_id: str, items: CheckedItems, *, lease: Lease | None) -> int:
        written, _ = await self._add(session_id, None, items, {}, lease)
        return int(written["version"])
