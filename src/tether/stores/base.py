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
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from .. import _core
from ..models import Lease, Page, Session, SessionHeader, StoredItem
from .abilities import ForksInStore, Purges, Restores
from .base_async import (
    PROTECTED_METHODS,
    AsyncStore,
    CheckedItems,
    CheckedKeys,
    CommitStamp,
    NewItems,
    StatusFilter,
)
from .base_sync import Store

__all__ = [
    "PROTECTED_METHODS",
    "AsyncStore",
    "CheckedItems",
    "CheckedKeys",
    "CommitStamp",
    "NewItems",
    "StatusFilter",
    "Store",
    "SyncBackedAsyncStore",
]

_T = TypeVar("_T")


class SyncBackedAsyncStore(AsyncStore):
    """An :class:`AsyncStore` that runs a sync :class:`Store`'s methods off the event loop.

    The file and SQLite stores do blocking file I/O with no native async driver to use, so
    their async twins are this thin adapter: every call runs in a worker thread
    (``asyncio.to_thread``) and the event loop never blocks. A store whose calls never block
    (the memory store) sets ``offload = False`` and is called inline.
    """

    offload = True

    def __init__(self, store: Store) -> None:
        self.sync = store
        """The sync store doing the work; use it from sync code that shares this store."""
        self._offer_abilities()

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if self.offload:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def create(self, session: Session) -> Session:
        return await self._call(self.sync.create, session)

    async def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        if limit is None:  # as before limit= existed: a store written then still works here
            return await self._call(self.sync.load, session_id, last=last, after=after)
        return await self._call(self.sync.load, session_id, last=last, after=after, limit=limit)

    async def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        # A lazy iterable (a generator, say) is drained here, in the caller's thread.
        return await self._call(
            self.sync.commit,
            session_id,
            expected_version,
            append=_core.item_list(append),
            changes=changes,
            lease=lease,
        )

    async def commit_stamped(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> CommitStamp:
        if not self._stamps_commits:  # a subclass that changes commit(): its commit, stamped
            return CommitStamp(  # by nothing more than its version (see AsyncStore)
                await self.commit(
                    session_id, expected_version, append=append, changes=changes, lease=lease
                )
            )
        # The sync store reports the stamp if it can (else the version its commit returns).
        return await self._call(
            self.sync.commit_stamped,
            session_id,
            expected_version,
            append=_core.item_list(append),
            changes=changes,
            lease=lease,
        )

    async def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        if changes is None:  # a store written before changes= still works here
            return await self._call(
                self.sync.replace_history,
                session_id,
                expected_version,
                _core.item_list(items),
                lease=lease,
            )
        return await self._call(
            self.sync.replace_history,
            session_id,
            expected_version,
            _core.item_list(items),
            changes=changes,
            lease=lease,
        )

    async def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        return await self._call(self.sync.append, session_id, _core.item_list(items), lease=lease)

    async def replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: NewItems = (),
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        return await self._call(
            self.sync.replace_tail,
            session_id,
            expected_version,
            after,
            _core.item_list(items),
            changes=changes,
            lease=lease,
        )

    async def items_by_key(self, session_id: str, keys: Iterable[str]) -> dict[str, StoredItem]:
        return await self._call(self.sync.items_by_key, session_id, _core.check_item_keys(keys))

    async def list(
        self,
        *,
        owner: str | None = None,
        agent: str | None = None,
        status: StatusFilter = None,
        metadata: Mapping[str, Any] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        return await self._call(
            self.sync.list,
            owner=owner,
            agent=agent,
            status=status,
            metadata=metadata,
            updated_after=updated_after,
            updated_before=updated_before,
            limit=limit,
            cursor=cursor,
        )

    async def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        if lease is None and force is False:  # a store written before lease= still works here
            return await self._call(self.sync.delete, session_id, expected_version)
        return await self._call(
            self.sync.delete, session_id, expected_version, lease=lease, force=force
        )

    async def exists(self, session_id: str) -> bool:
        return await self._call(self.sync.exists, session_id)

    async def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        return await self._call(self.sync.claim, session_id, owner, ttl)

    async def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        return await self._call(self.sync.renew, lease, ttl)

    async def release(self, lease: Lease) -> None:
        await self._call(self.sync.release, lease)

    def _offer_abilities(self) -> None:
        """Give this adapter the optional abilities its sync store has, and only those: set on
        the instance, so ``isinstance(adapter, AsyncRestores)`` (which looks at the instance
        too) answers for the store underneath instead of always yes."""
        sync = self.sync
        if isinstance(sync, ForksInStore):
            fork = sync.fork_session

            async def fork_session(child: Session, at: int) -> SessionHeader:
                """See the sync store's ``fork_session``."""
                return await self._call(fork, child, at)

            self.fork_session = fork_session
        if isinstance(sync, Restores):
            restore = sync.restore

            async def restore_async(
                session: Session, *, replace: bool = False, expected_version: int | None = None
            ) -> None:
                """See the sync store's ``restore``."""
                if expected_version is None:  # a store written before expected_version=
                    await self._call(restore, session, replace=replace)
                else:
                    await self._call(
                        restore, session, replace=replace, expected_version=expected_version
                    )

            self.restore = restore_async
        if isinstance(sync, Purges):
            purge = sync.purge_expired

            async def purge_expired() -> int:
                """See the sync store's ``purge_expired``."""
                return await self._call(purge)

            self.purge_expired = purge_expired

    async def close(self) -> None:
        await self._call(self.sync.close)
