"""The store contract: what every store, built-in or your own, promises.

:class:`Store` (sync) and :class:`AsyncStore` (async) have the same methods with the same
meaning. The contract is written once, in ``base_async.py`` (``AsyncStore``); ``base_sync.py``
(``Store``) is generated from it by ``tools/unasync.py``. This module is where both are
imported from, with :class:`SyncBackedAsyncStore`, the hand-written adapter that gives a
blocking store its async side.

To check a store against this contract, run the conformance suite in :mod:`tether.testing`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from ._arguments import CheckedItems, CheckedKeys, ListFilters, NewItems, StatusFilter
from ._writes import Added, Write
from .base_async import PROTECTED_METHODS, AsyncStore, CommitStamp
from .base_sync import Store
from .wrapping_async import AsyncWrappingStore, loads_as_target

__all__ = [
    "PROTECTED_METHODS",
    "Added",
    "AsyncStore",
    "CheckedItems",
    "CheckedKeys",
    "CommitStamp",
    "ListFilters",
    "NewItems",
    "StatusFilter",
    "Store",
    "SyncBackedAsyncStore",
    "Write",
]

_T = TypeVar("_T")


class SyncBackedAsyncStore(AsyncWrappingStore):
    """An :class:`AsyncStore` that runs a sync :class:`Store`'s methods off the event loop.

    The file and SQLite stores do blocking file I/O with no native async driver to use, so
    their async twins are this thin adapter: every call runs in a worker thread
    (``asyncio.to_thread``) and the event loop never blocks. A store whose calls never block
    (the memory store) sets ``offload = False`` and is called inline.

    It forwards as :class:`~tether.stores.AsyncWrappingStore` does, to ``sync`` instead of
    ``inner``: the arguments are checked once, on this side, and the sync store's protected
    methods called with the checked values (its public ones where it overrides them, an
    argument the contract gained later, such as ``limit=`` or ``lease=``, passed on only when
    given, so a store written before it still works here). It offers the sync store's optional
    abilities, and only those.
    """

    offload = True

    def __init__(self, store: Store) -> None:  # no super().__init__: ``inner`` is for async stores
        self.sync = store
        """The sync store doing the work; use it from sync code that shares this store."""
        self._offer_abilities()

    @property
    def _target(self) -> Store:
        return self.sync

    def _change_mark(self, session_id: str) -> tuple[Hashable, int] | None:
        """The sync store's :meth:`AsyncStore._change_mark`, called here (it does no I/O to
        wait for), unless this adapter changes what a load returns."""
        if not loads_as_target(type(self)):
            return None
        return self.sync._change_mark(session_id)

    async def _run(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if not self.offload:
            return method(*args, **kwargs)
        # Items and keys are copied into lists here, in the caller's thread: a list the
        # caller's other tasks change meanwhile is not read by the worker thread, and a
        # generator (given to a store's own public method) runs where it was made.
        args = tuple(_drained(value) for value in args)
        kwargs = {name: _drained(value) for name, value in kwargs.items()}
        return await asyncio.to_thread(method, *args, **kwargs)


def _drained(value: _T) -> _T | list[Any]:
    return list(value) if isinstance(value, (list, tuple, set, frozenset, Iterator)) else value
