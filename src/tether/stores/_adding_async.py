"""A store whose writes that add items are one method, async side; tools/unasync.py writes the
sync side from it.

``commit``, a stamped ``commit`` and ``append`` differ only in what they ask of one write: a
version to compare (``append`` names none) and what to report (the new version, or the whole
stamp). A store that does the write once, as ``_add`` taking the write's arguments as one
:class:`~tether.stores._writes.Addition` and returning what it wrote (an
:class:`~tether.stores._writes.Added`: the new version, and the stamp when asked), subclasses
:class:`_AsyncAddingStore` and gets the three protected methods from it: the key-value kit, the
file store, SQLite and PostgreSQL do.
"""

from __future__ import annotations

from abc import abstractmethod

from .. import _core
from ..models import Lease
from ._writes import Added, Addition
from .base import AsyncStore, CheckedItems


class _AsyncAddingStore(AsyncStore):
    """:meth:`_commit`, :meth:`_commit_stamped` and :meth:`_append` as calls of one :meth:`_add`."""

    @abstractmethod
    async def _add(self, write: Addition) -> Added:
        """The write (a commit, or with ``expected_version`` None a blind append); what it
        wrote, from inside the same write."""

    async def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        added = await self._add(Addition(session_id, expected_version, items, changes, lease))
        return added.version

    async def _commit_stamped(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> _core.CommitStamp:
        added = await self._add(Addition(session_id, expected_version, items, changes, lease))
        return added.stamp()

    async def _append(self, session_id: str, items: CheckedItems, *, lease: Lease | None) -> int:
        return (await self._add(Addition(session_id, None, items, {}, lease))).version
