"""The store contract: what every store, built-in or your own, promises.

:class:`Store` (sync) and :class:`AsyncStore` (async) have the same methods with the same
meaning; the contract is written once, here, on :class:`Store`.

Every write is versioned. A session is stored at version 1 by ``create`` and every successful
write adds 1. A write that names a version the store no longer holds raises
:class:`~tether.errors.ConflictError` and writes nothing: two writers can never both succeed
from the same version, and nothing either wrote is lost silently.

History is append-only: a commit adds items after the existing ones and never rewrites them, so
the cost of a commit does not grow with the length of the history. The store gives every item a
``seq`` (1, 2, 3, ... within the session, contiguous; ``replace_history`` never reuses one;
``replace_tail`` renumbers only the items it writes, from just after the ones it keeps).

An item is any JSON object, stored exactly as given: ``Session.items`` gives it back with the
store's ``seq`` / ``timestamp`` / ``key`` beside it (``Session.history`` is the older view, with
``seq`` and ``timestamp`` merged into copies). An item appended as a
:class:`~tether.KeyedItem` can be read by its key (``items_by_key``) at a cost that does not
grow with the history.

A session whose ``expires_at`` has passed behaves exactly as a missing one.

To check a store against this contract, run the conformance suite in :mod:`tether.testing`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from .. import _core
from .._core import ListQuery
from .._ids import validate_session_id
from ..errors import ConflictError, InvalidRequest
from ..models import (
    HistoryItem,
    KeyedItem,
    Lease,
    Page,
    Session,
    SessionHeader,
    SessionStatus,
    StoredItem,
)

__all__ = ["AsyncStore", "Store", "SyncBackedAsyncStore"]

StatusFilter = str | SessionStatus | Collection[str | SessionStatus] | None
NewItems = Iterable[Mapping[str, Any] | KeyedItem]
"""Items to append: plain dicts, or :class:`~tether.KeyedItem` for an item with a key."""
_S = TypeVar("_S", bound="Store")
_A = TypeVar("_A", bound="AsyncStore")
_T = TypeVar("_T")


class Store(ABC):
    """A place sessions live. Subclass it to write your own store; see ``docs/stores.md``."""

    @abstractmethod
    def create(self, session: Session) -> Session:
        """Store a new session at version 1 and return it as stored.

        The store sets ``version`` (1), ``schema_version``, ``created_at`` / ``updated_at``
        (now), and numbers ``session.history`` from ``seq`` 1. Raises
        :class:`~tether.errors.SessionExists` if the id is taken (an expired session's id is
        free again), :class:`~tether.errors.InvalidSessionId` or
        :class:`~tether.errors.InvalidSessionData` before anything is written.
        """

    @abstractmethod
    def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        """The session's header and a window of its history, oldest item first.

        By default the whole history; ``last=N`` the newest N items (``last=0``: header only);
        ``after=S`` the items with ``seq > S`` (what a worker holding items up to ``S`` is
        missing); both together: the newest N of those. ``limit=L`` returns at most the L
        *oldest* items of that window (a page: the next one starts after the last ``seq``
        returned; :meth:`iter_history` pages that way), and the store reads only those from
        storage. ``history_len`` and ``last_seq`` always describe the whole history.
        ``last`` and ``after`` are ints >= 0, ``limit`` an int >= 1, each or None; anything else
        raises :class:`~tether.errors.InvalidRequest` before any I/O. Raises
        :class:`~tether.errors.SessionNotFound`.
        """

    @abstractmethod
    def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        """Atomically check the version, append items, apply header changes; return the version.

        ``changes`` maps header fields to their new values: ``state``, ``metadata``,
        ``options`` (each replaced whole), ``status``, ``owner``, ``agent``, ``expires_at``.
        If the stored version is not ``expected_version``, raises
        :class:`~tether.errors.ConflictError` (with the expected and actual versions) and
        writes nothing. Bad input raises before anything is written. All or nothing: a crash
        mid-commit leaves the session as it was before the call.

        Leases: with ``lease``, the write happens only while it is the session's current,
        unexpired lease, else :class:`~tether.errors.LeaseLost`. Without one, the write is
        refused with :class:`~tether.errors.AlreadyClaimed` while another runner holds a live
        lease. Either way nothing is written.
        """

    @abstractmethod
    def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        """Compare-and-replace the whole history (for compaction). Returns the new version.

        The new items get fresh ``seq`` numbers after the old ``last_seq``, so a reader that
        cached items by ``seq`` sees that its cache is stale (``first_seq`` moved past it).
        ``changes`` changes the header in the same write, as :meth:`commit`'s does. Raises
        :class:`~tether.errors.ConflictError` and checks ``lease`` like :meth:`commit`.
        """

    def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        """Blind append: add ``items`` after whatever the history holds now; return the new
        version.

        No ``expected_version``: the store takes the session as it is at the write, so
        parallel tasks appending to one session never read first nor retry on
        :class:`~tether.errors.ConflictError`. Everything else is :meth:`commit`'s: items are
        numbered in one block, the version goes up by 1, all or nothing, and the lease rules
        hold (with ``lease`` only while it is current, else :class:`~tether.errors.LeaseLost`;
        without one, :class:`~tether.errors.AlreadyClaimed` while another runner holds a live
        lease). A key already in the session raises :class:`~tether.errors.DuplicateItemKey`.

        The built-in stores do it in one atomic step. This default (for a store of your own
        that does not override it) reads the version and commits, retrying on conflict.
        """
        drained = _core.new_items(items)
        validate_session_id(session_id)
        while True:
            version = self.load(session_id, last=0).version
            try:
                return self.commit(session_id, version, append=drained, lease=lease)
            except ConflictError:
                continue

    def replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: NewItems = (),
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        """Compare-and-replace the items after seq ``after``; return the new version.

        The items with ``seq > after`` are removed and ``items`` (none: a truncation) are
        appended numbered from ``after + 1``; the items up to ``after`` are kept with their
        seqs, so the write costs what the suffix costs, whatever the history's length (an
        agent SDK's ``pop_item``, a compaction of the newest turns). Keys of removed items are
        free again. ``after`` runs from ``first_seq - 1`` (replace everything, seqs kept
        contiguous) to ``last_seq`` (a plain append); outside that,
        :class:`~tether.errors.InvalidRequest`. ``changes``, versions and leases are
        :meth:`commit`'s. Seqs above ``after`` are reused: a reader that caches items by seq
        must notice the new ``version``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no replace_tail()")

    def items_by_key(self, session_id: str, keys: Iterable[str]) -> dict[str, StoredItem]:
        """The stored items with these keys (see :class:`~tether.KeyedItem`), by key.

        Keys the session does not hold are absent from the result. Each key costs the same at
        any history length (an index lookup, never a scan). At most
        :data:`~tether._core.MAX_KEYS` keys per call. Raises
        :class:`~tether.errors.SessionNotFound` if the session is missing or expired.
        """
        raise NotImplementedError(f"{type(self).__name__} has no items_by_key()")

    def list(
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
        """One page of session headers (never histories), newest ``updated_at`` first.

        Filters combine with AND: ``status`` may be one status or several; ``metadata`` keeps
        sessions whose top-level metadata has every given key with an equal JSON value;
        ``updated_after`` / ``updated_before`` are exclusive bounds. Pass a page's
        ``next_cursor`` to get the next one: sessions created or updated while you page move to
        the front and are not repeated; no session that stays put is skipped or repeated.
        """
        return self._list_page(
            _core.build_list_query(
                owner=owner,
                agent=agent,
                status=status,
                metadata=metadata,
                updated_after=updated_after,
                updated_before=updated_before,
                limit=limit,
                cursor=cursor,
            )
        )

    def _list_page(self, query: ListQuery) -> Page:
        """The page for an already checked query. The built-in stores implement this; your
        own store may implement it too, or override :meth:`list` as a whole instead."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither list() nor _list_page()"
        )

    @abstractmethod
    def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        """Delete a session and its history. Returns False if there was none.

        With ``expected_version``, deletes only that version: otherwise raises
        :class:`~tether.errors.ConflictError`, or :class:`~tether.errors.SessionNotFound` if
        the session is missing.

        Leases are checked as by :meth:`commit`: with ``lease``, the delete happens only while
        it is the current, unexpired lease, else :class:`~tether.errors.LeaseLost`; without
        one, :class:`~tether.errors.AlreadyClaimed` while a runner holds a live lease.
        ``force=True`` deletes whatever lease is held (an operator clearing a stuck session).
        A session stored by a newer tether is never deleted, forced or not
        (:class:`~tether.errors.UnsupportedSchemaVersion`).
        """

    @abstractmethod
    def exists(self, session_id: str) -> bool:
        """Whether a live (not expired) session with this id is stored."""

    @abstractmethod
    def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        """Take the session's lease for ``ttl`` (seconds or a timedelta): one runner at a time.

        Returns a :class:`~tether.Lease` with a new token and the next fencing number. Raises
        :class:`~tether.errors.AlreadyClaimed` (with the holder and when its lease ends) while
        any unexpired lease is held, even one held under the same ``owner`` name: names are
        public, so only the lease itself (its token) acts on a live lease: :meth:`renew` keeps
        it, :meth:`release` frees it. A lease that expired is free to take: a crashed runner
        never blocks a session for longer than its ttl. Claims do not change ``version``.
        """

    @abstractmethod
    def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        """Extend a lease to ``ttl`` from now (same token and fence).

        Raises :class:`~tether.errors.LeaseLost` unless ``lease`` is the current, unexpired one.
        """

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the lease up so the next owner can claim at once.

        Raises :class:`~tether.errors.LeaseLost` unless ``lease`` is the current, unexpired one.
        """

    def close(self) -> None:  # noqa: B027 - optional: a store with nothing to release skips it
        """Release connections and files. The store is unusable afterwards."""

    def iter_sessions(self, **filters: Any) -> Iterator[SessionHeader]:
        """Every header that :meth:`list` would return with these filters, page by page."""
        cursor = None
        while True:
            page = self.list(**filters, cursor=cursor)
            yield from page.sessions
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_history(
        self, session_id: str, *, after: int | None = None, page_size: int = 1000
    ) -> Iterator[HistoryItem]:
        """Every item of the history (with ``seq > after``), oldest first, a page at a time.

        Each page is one ``load(session_id, after=..., limit=page_size)``, so at most one page
        is held in memory however long the history: use it to export, scan or replay a long
        session. Items committed while it runs are yielded too; it ends at the page whose items
        reach that page's ``last_seq``. If the history is replaced (``replace_history``) or the
        session deleted and created again between two pages, the next page raises
        :class:`~tether.errors.ConflictError` (what was yielded is no longer the session's
        history: start again); a session deleted meanwhile raises
        :class:`~tether.errors.SessionNotFound`. A bad ``after`` or ``page_size`` (an int >= 1)
        raises :class:`~tether.errors.InvalidRequest` at the call, before any I/O.
        """
        return self._history_pages(_core.HistoryPages(session_id, after, page_size))

    def _history_pages(self, pages: _core.HistoryPages) -> Iterator[HistoryItem]:
        while True:
            page = self.load(pages.session_id, after=pages.after, limit=pages.page_size)
            items, more = pages.take(page)
            del page  # hold one page at a time
            yield from items
            if not more:
                return
            del items

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncStore(ABC):
    """The async side of :class:`Store`: same methods, same meaning, awaited."""

    @abstractmethod
    async def create(self, session: Session) -> Session:
        """See :meth:`Store.create`."""

    @abstractmethod
    async def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        """See :meth:`Store.load`."""

    @abstractmethod
    async def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        """See :meth:`Store.commit`."""

    @abstractmethod
    async def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        """See :meth:`Store.replace_history`."""

    async def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        """See :meth:`Store.append`."""
        drained = _core.new_items(items)
        validate_session_id(session_id)
        while True:
            version = (await self.load(session_id, last=0)).version
            try:
                return await self.commit(session_id, version, append=drained, lease=lease)
            except ConflictError:
                continue

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
        """See :meth:`Store.replace_tail`."""
        raise NotImplementedError(f"{type(self).__name__} has no replace_tail()")

    async def items_by_key(self, session_id: str, keys: Iterable[str]) -> dict[str, StoredItem]:
        """See :meth:`Store.items_by_key`."""
        raise NotImplementedError(f"{type(self).__name__} has no items_by_key()")

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
        """See :meth:`Store.list`."""
        return await self._list_page(
            _core.build_list_query(
                owner=owner,
                agent=agent,
                status=status,
                metadata=metadata,
                updated_after=updated_after,
                updated_before=updated_before,
                limit=limit,
                cursor=cursor,
            )
        )

    async def _list_page(self, query: ListQuery) -> Page:
        """See :meth:`Store._list_page`."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither list() nor _list_page()"
        )

    @abstractmethod
    async def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        """See :meth:`Store.delete`."""

    @abstractmethod
    async def exists(self, session_id: str) -> bool:
        """See :meth:`Store.exists`."""

    @abstractmethod
    async def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        """See :meth:`Store.claim`."""

    @abstractmethod
    async def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        """See :meth:`Store.renew`."""

    @abstractmethod
    async def release(self, lease: Lease) -> None:
        """See :meth:`Store.release`."""

    async def close(self) -> None:  # noqa: B027 - optional, as on Store
        """See :meth:`Store.close`."""

    async def iter_sessions(self, **filters: Any) -> AsyncIterator[SessionHeader]:
        """See :meth:`Store.iter_sessions`."""
        cursor = None
        while True:
            page = await self.list(**filters, cursor=cursor)
            for header in page.sessions:
                yield header
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_history(
        self, session_id: str, *, after: int | None = None, page_size: int = 1000
    ) -> AsyncIterator[HistoryItem]:
        """See :meth:`Store.iter_history`: ``async for item in store.iter_history(id)``."""
        return self._history_pages(_core.HistoryPages(session_id, after, page_size))

    async def _history_pages(self, pages: _core.HistoryPages) -> AsyncIterator[HistoryItem]:
        while True:
            page = await self.load(pages.session_id, after=pages.after, limit=pages.page_size)
            items, more = pages.take(page)
            del page  # hold one page at a time
            for item in items:
                yield item
            if not more:
                return
            del items

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


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

    async def fork_session(self, child: Session, at: int) -> SessionHeader:
        """See the sync store's ``fork_session`` (an optional ability)."""
        fork: Callable[[Session, int], SessionHeader] | None = getattr(
            self.sync, "fork_session", None
        )
        if fork is None:  # the runtime then copies the items itself
            raise NotImplementedError(f"{type(self.sync).__name__} has no fork_session()")
        return await self._call(fork, child, at)

    async def restore(
        self, session: Session, *, replace: bool = False, expected_version: int | None = None
    ) -> None:
        """See the sync store's ``restore`` (an optional ability)."""
        restore: Callable[..., None] | None = getattr(self.sync, "restore", None)
        if restore is None:
            raise NotImplementedError(f"{type(self.sync).__name__} has no restore()")
        if expected_version is None:  # a store written before expected_version= still works
            await self._call(restore, session, replace=replace)
        else:
            await self._call(restore, session, replace=replace, expected_version=expected_version)

    async def purge_expired(self) -> int:
        """See the sync store's ``purge_expired`` (an optional ability)."""
        purge: Callable[[], int] | None = getattr(self.sync, "purge_expired", None)
        if purge is None:
            raise InvalidRequest(f"{type(self.sync).__name__} has no purge_expired()")
        return await self._call(purge)

    async def close(self) -> None:
        await self._call(self.sync.close)
