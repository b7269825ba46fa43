"""A store whose writes take their arguments as one value, async side; tools/unasync.py writes
the sync side from it.

``commit``, a stamped ``commit`` and ``append`` differ only in what they ask of one write: a
version to compare (``append`` names none) and what to report (the new version, or the whole
stamp). A store that does the write once, as ``_add`` taking the write's arguments as one
:class:`~tether.stores._writes.Write` and returning what it wrote (an
:class:`~tether.stores._writes.Added`: the new version, and the stamp when asked), subclasses
:class:`_AsyncAddingStore` and gets the three protected methods from it. Its two replacing
writes take the same value: ``_replace_all`` (``replace_history``) and ``_replace_after``
(``replace_tail``). The memory store, the key-value kit, the file store, SQLite and PostgreSQL
do; the contract's signatures are then declared here once, not in each store.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from .. import _core
from ..models import Lease
from ._writes import Added, Write
from .base import AsyncStore, CheckedItems


def write_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Write:
    """The :class:`Write` of a protected write's arguments (session id, expected version,
    items; ``changes`` and ``lease`` by keyword, as the contract passes them), built without
    the keyword binding of a NamedTuple's ``__new__``, which costs more: every commit is one."""
    return Write._make((*args, kwargs["changes"], kwargs["lease"]))


class _AsyncAddingStore(AsyncStore):
    """:meth:`_commit`, :meth:`_commit_stamped` and :meth:`_append` as calls of one :meth:`_add`;
    :meth:`_replace_history` and :meth:`_replace_tail` as :meth:`_replace_all` and
    :meth:`_replace_after`, each given the write as one :class:`~tether.stores._writes.Write`."""

    _adds_encoded: ClassVar[object] = None
    """The ``_add`` that also takes a write whose items are already checked and encoded
    (:class:`tether._core.EncodedNewItems`, which a wrapping store hands on instead of items
    it would have this store encode again), set by a store class whose ``_add`` does; a
    subclass that overrides ``_add`` is not given them (``cls._add`` is then another)."""

    @abstractmethod
    async def _add(self, write: Write) -> Added:
        """The write (a commit, or with ``expected_version`` None a blind append); what it
        wrote, from inside the same write."""

    # The contract's protected writes, each taking its arguments (their signatures are the
    # contract's, in base_async.py, written once there) as the one Write they make: session id,
    # expected version, items, then changes= and lease=, in Write's own order.

    async def _commit(self, *args: Any, **kwargs: Any) -> int:
        return (await self._add(write_of(args, kwargs))).version

    async def _commit_stamped(self, *args: Any, **kwargs: Any) -> _core.CommitStamp:
        return (await self._add(write_of(args, kwargs))).stamp()

    async def _append(self, session_id: str, items: CheckedItems, *, lease: Lease | None) -> int:
        return (await self._add(Write(session_id, None, items, {}, lease))).version

    @abstractmethod
    async def _replace_all(self, write: Write) -> int:
        """``replace_history``: the whole history replaced by ``write.items``, numbered on from
        the old ``last_seq``; the new version."""

    @abstractmethod
    async def _replace_after(self, write: Write, after: int) -> int:
        """``replace_tail``: the items after seq ``after`` replaced by ``write.items``; the new
        version."""

    async def _replace_history(self, *args: Any, **kwargs: Any) -> int:
        return await self._replace_all(write_of(args, kwargs))

    async def _replace_tail(
        self, session_id: str, expected_version: int, after: int, *rest: Any, **kwargs: Any
    ) -> int:
        """The items after ``after`` replaced: ``after`` apart, the arguments of a Write."""
        return await self._replace_after(
            Write(session_id, expected_version, *rest, **kwargs), after
        )
