"""The store contract, async side; tools/unasync.py writes the sync side from it.

The two sides have the same methods with the same meaning, written once in base_async.py;
import them from :mod:`tether.stores.base` (or :mod:`tether`).

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

Each public method checks and normalises its arguments once, here, in one order (the session
id, ``changes``, the version, the window, ``after``, the lease, the keys, the owner, the delete
arguments, the items drained into a list, the ttl), before any I/O, and then calls the store's
protected method (``_create``, ``_load``, ``_commit``, ...) with the checked values. A store
implements the protected methods; a store written before them, which overrides the public
methods instead, keeps working (see ``_contract.py``).

``commit_stamped`` is ``commit`` reporting what the write stamped (a :class:`CommitStamp`: the
version, the commit time, the lease fields), so a caller holding the session it committed
against can build the saved one without reading it back. A store reports it through the
optional ``_commit_stamped``, cheaply, from inside the same write; any other store (one without
it, or one that overrides ``commit`` or ``_commit`` below the class that implements it) reports
the version alone, from its own ``commit``.

To check a store against this contract, run the conformance suite in :mod:`tether.testing`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from .. import _core
from .._core import CommitStamp, ListQuery
from .._ids import validate_session_id
from .._time import Clock, system_clock
from ..errors import ConflictError, InvalidRequest
from ..models import (
    HistoryItem,
    Lease,
    Page,
    Session,
    SessionHeader,
    StoredItem,
)
from ._arguments import (
    CheckedItems,
    CheckedKeys,
    ListFilters,
    NewItems,
    RawWindow,
    StatusFilter,
    commit_args,
)
from ._contract import PROTECTED_METHODS, _required, _StoreMachinery
from .abilities import AsyncRestores, missing

__all__ = [
    "PROTECTED_METHODS",
    "AsyncStore",
    "CheckedItems",
    "CommitStamp",
    "ListFilters",
    "NewItems",
    "RawWindow",
    "StatusFilter",
]

_A = TypeVar("_A", bound="AsyncStore")


class AsyncStore(_StoreMachinery):
    """A place sessions live: the contract every store keeps. Subclass it and implement the
    protected methods (``_create``, ``_load``, ``_commit``, ...) to write your own store; see
    ``docs/stores.md``."""

    # --- the public methods: check once, then call the store --------------------------------

    async def create(self, session: Session) -> Session:
        """Store a new session at version 1 and return it as stored.

        The store sets ``version`` (1), ``schema_version``, ``created_at`` / ``updated_at``
        (now), and numbers ``session.history`` from ``seq`` 1. Raises
        :class:`~tether.errors.SessionExists` if the id is taken (an expired session's id is
        free again), :class:`~tether.errors.InvalidSessionId` or
        :class:`~tether.errors.InvalidSessionData` before anything is written.
        """
        if not isinstance(session, Session):
            raise InvalidRequest(f"create takes a tether.Session, not {type(session).__name__}")
        validate_session_id(session.id)
        return await self._create(session)

    async def load(
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
        validate_session_id(session_id)
        _core.check_window(last, after, limit)
        return await self._load(session_id, last=last, after=after, limit=limit)

    async def commit(
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
        items, normalized, checked_lease = commit_args(
            session_id, expected_version, append, changes, lease
        )
        return await self._commit(
            session_id, expected_version, items, changes=normalized, lease=checked_lease
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
        """:meth:`commit`, returning what the write stamped instead of the version alone.

        The same write with the same arguments, checks and errors. The
        :class:`~tether.stores.base.CommitStamp` holds the new ``version`` and, when the store
        reports them (``stamp.reported``), the commit time (the header's ``updated_at`` and the
        ``timestamp`` of each new item without its own) and the lease fields as the write left
        them: with the session read at ``expected_version``, that is everything a load of the
        new items would tell (``tether.Sessions`` builds the saved session from it, with no
        read). A store that implements ``_commit_stamped`` reports it; any other reports the
        version its :meth:`commit` returns.
        """
        if not self._stamps_commits:  # what commit() does, whichever method does it
            version = await self.commit(
                session_id, expected_version, append=append, changes=changes, lease=lease
            )
            return CommitStamp(version)
        items, normalized, checked_lease = commit_args(
            session_id, expected_version, append, changes, lease
        )
        return await self._commit_stamped(
            session_id, expected_version, items, changes=normalized, lease=checked_lease
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
        """Compare-and-replace the whole history (for compaction). Returns the new version.

        The new items get fresh ``seq`` numbers after the old ``last_seq``, so a reader that
        cached items by ``seq`` sees that its cache is stale (``first_seq`` moved past it).
        ``changes`` changes the header in the same write, as :meth:`commit`'s does. Raises
        :class:`~tether.errors.ConflictError` and checks ``lease`` like :meth:`commit`.
        """
        drained, normalized, checked_lease = commit_args(
            session_id, expected_version, items, changes, lease
        )
        return await self._replace_history(
            session_id, expected_version, drained, changes=normalized, lease=checked_lease
        )

    async def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        """Blind append: add ``items`` after whatever the history holds now; return the new
        version.

        No ``expected_version``: the store takes the session as it is at the write, so
        parallel tasks appending to one session never read first nor retry on
        :class:`~tether.errors.ConflictError`. Everything else is :meth:`commit`'s: items are
        numbered in one block, the version goes up by 1, all or nothing, and the lease rules
        hold (with ``lease`` only while it is current, else :class:`~tether.errors.LeaseLost`;
        without one, :class:`~tether.errors.AlreadyClaimed` while another runner holds a live
        lease). A key already in the session raises :class:`~tether.errors.DuplicateItemKey`.

        The built-in stores do it in one atomic step. The default ``_append`` (for a store of
        your own without one) reads the version and commits, retrying on conflict.
        """
        validate_session_id(session_id)
        checked_lease = _core.check_lease_arg(lease, optional=True)
        drained = _core.item_list(items)
        return await self._append(session_id, drained, lease=checked_lease)

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
        drained, normalized, checked_lease = commit_args(
            session_id, expected_version, items, changes, lease, after=after
        )
        return await self._replace_tail(
            session_id, expected_version, after, drained, changes=normalized, lease=checked_lease
        )

    async def items_by_key(self, session_id: str, keys: Iterable[str]) -> dict[str, StoredItem]:
        """The stored items with these keys (see :class:`~tether.KeyedItem`), by key.

        Keys the session does not hold are absent from the result. Each key costs the same at
        any history length (an index lookup, never a scan). At most
        :data:`~tether._core.MAX_KEYS` keys per call. Raises
        :class:`~tether.errors.SessionNotFound` if the session is missing or expired.
        """
        validate_session_id(session_id)
        return await self._items_by_key(session_id, _core.check_item_keys(keys))

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
        """One page of session headers (never histories), newest ``updated_at`` first.

        Filters combine with AND: ``status`` may be one status or several; ``metadata`` keeps
        sessions whose top-level metadata has every given key with an equal JSON value;
        ``updated_after`` / ``updated_before`` are exclusive bounds. Pass a page's
        ``next_cursor`` to get the next one: sessions created or updated while you page move to
        the front and are not repeated; no session that stays put is skipped or repeated.
        """
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

    async def delete(
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
        validate_session_id(session_id)
        _core.check_delete_args(expected_version, lease, force)
        return await self._delete(session_id, expected_version, lease=lease, force=force)

    async def exists(self, session_id: str) -> bool:
        """Whether a live (not expired) session with this id is stored."""
        validate_session_id(session_id)
        return await self._exists(session_id)

    async def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        """Take the session's lease for ``ttl`` (seconds or a timedelta): one runner at a time.

        Returns a :class:`~tether.Lease` with a new token and the next fencing number. Raises
        :class:`~tether.errors.AlreadyClaimed` (with the holder and when its lease ends) while
        any unexpired lease is held, even one held under the same ``owner`` name: names are
        public, so only the lease itself (its token) acts on a live lease: :meth:`renew` keeps
        it, :meth:`release` frees it. A lease that expired is free to take: a crashed runner
        never blocks a session for longer than its ttl. Claims do not change ``version``.
        """
        validate_session_id(session_id)
        checked_owner = _core.check_owner(owner)
        return await self._claim(session_id, checked_owner, _core.ttl_micros(ttl))

    async def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        """Extend a lease to ``ttl`` from now (same token and fence).

        Raises :class:`~tether.errors.LeaseLost` unless ``lease`` is the current, unexpired one.
        """
        checked = _core.check_lease_arg(lease)
        return await self._renew(checked, _core.ttl_micros(ttl))

    async def release(self, lease: Lease) -> None:
        """Give the lease up so the next owner can claim at once.

        Raises :class:`~tether.errors.LeaseLost` unless ``lease`` is the current, unexpired one.
        """
        await self._release(_core.check_lease_arg(lease))

    async def close(self) -> None:
        """Release connections and files. The store is unusable afterwards."""

    # --- the protected methods: what a store implements, given checked values ---------------

    @_required
    async def _create(self, session: Session) -> Session:
        """:meth:`create` for a :class:`~tether.Session` whose id is valid (its fields are
        checked as the store encodes them with ``_core.new_session_doc``)."""
        raise NotImplementedError(f"{type(self).__name__} has no _create()")

    @_required
    async def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        """:meth:`load` for a valid id and window."""
        raise NotImplementedError(f"{type(self).__name__} has no _load()")

    async def _load_raw(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> RawWindow | None:
        """Optional: :meth:`_load` for a valid id and window with the rows left undecoded, for
        a wrapper that decodes them itself (the encrypted store: its rows hold ciphertexts,
        which a decoded load would parse once for nothing). The header document as stored
        (live, not upgraded) and each row's ``(seq, JSON bytes)``, oldest first; raises as
        :meth:`load` does. None (this default): the store does not offer it, and the caller
        calls :meth:`load`."""
        return None

    def _change_mark(self, session_id: str) -> tuple[Hashable, int] | None:
        """Optional, and no I/O a caller waits on: ``(others, writes)`` for ``session_id``,
        where ``others`` changes whenever a write that may change that session landed since
        other than the ones counted in ``writes``: the writes to that session begun through
        this store object (each counted before it can change anything; the count may also
        count other sessions' writes). Two equal marks say nothing that session holds was
        written in between, so a copy read after the first is still as it is stored (the
        runtime's cache then serves ``get`` without reading; a session that expires is read
        anyway), and a mark one ``writes`` further says this object's one write to it was all.
        None (this default): the store cannot tell, and the caller reads."""
        return None

    async def _fork_by_copy(self, child: Session, at: int, clock: Clock | None) -> SessionHeader:
        """A fork that copies (``_core.copied_fork``, made now by ``clock``, the system's when
        None), written by the store's ``restore``: for a store whose ``fork_session`` cannot
        share its parent's items every time (Redis and PostgreSQL, past their share depth)."""
        if not isinstance(self, AsyncRestores):
            raise missing(self, AsyncRestores)
        parent = await self._load(str(child.parent_id), last=None, after=None, limit=None)
        made = _core.copied_fork(child, parent, at, (clock or system_clock)())
        await self.restore(made)
        return made.header

    @_required
    async def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        """:meth:`commit` with ``changes`` already normalised (``_core.normalize_changes``:
        document values, ``expires_at`` in µs), the items drained into a list, a checked lease."""
        raise NotImplementedError(f"{type(self).__name__} has no _commit()")

    async def _commit_stamped(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> CommitStamp:
        """:meth:`_commit`, returning ``_core.commit_stamp(new_header_document)`` from inside
        the same write. Optional: a store without it (or whose ``commit`` / ``_commit`` is
        overridden below it) is never called here; :meth:`commit_stamped` then calls
        :meth:`commit` and reports the version alone."""
        raise NotImplementedError(f"{type(self).__name__} has no _commit_stamped()")

    @_required
    async def _replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        """:meth:`replace_history` with checked values, as :meth:`_commit` gets them."""
        raise NotImplementedError(f"{type(self).__name__} has no _replace_history()")

    async def _append(self, session_id: str, items: CheckedItems, *, lease: Lease | None) -> int:
        """:meth:`append` with checked values. This default reads the version and commits,
        retrying on conflict; the built-in stores append in one atomic step instead."""
        while True:
            # the public methods: a store that overrides them (not _load / _commit) works too
            version = (await self.load(session_id, last=0)).version
            try:
                return await self.commit(session_id, version, append=items, lease=lease)
            except ConflictError:
                continue

    async def _replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: CheckedItems,
        *,
        changes: _core.Doc,
        lease: Lease | None,
    ) -> int:
        """:meth:`replace_tail` with checked values (``after`` an int >= 0, checked against
        the history by ``_core.items_kept``). Optional: without it, ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no replace_tail()")

    async def _items_by_key(self, session_id: str, keys: CheckedKeys) -> dict[str, StoredItem]:
        """:meth:`items_by_key` for checked, distinct keys. Optional: without it,
        ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no items_by_key()")

    async def _list_page(self, query: ListQuery) -> Page:
        """The page for an already checked query. The built-in stores implement this; your
        own store may implement it too, or override :meth:`list` as a whole instead."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither list() nor _list_page()"
        )

    @_required
    async def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        """:meth:`delete` with checked arguments."""
        raise NotImplementedError(f"{type(self).__name__} has no _delete()")

    @_required
    async def _exists(self, session_id: str) -> bool:
        """:meth:`exists` for a valid id."""
        raise NotImplementedError(f"{type(self).__name__} has no _exists()")

    @_required
    async def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        """:meth:`claim` with a checked owner and the ttl in µs (``_core.ttl_micros``)."""
        raise NotImplementedError(f"{type(self).__name__} has no _claim()")

    @_required
    async def _renew(self, lease: Lease, ttl: int) -> Lease:
        """:meth:`renew` with a checked lease and the ttl in µs."""
        raise NotImplementedError(f"{type(self).__name__} has no _renew()")

    @_required
    async def _release(self, lease: Lease) -> None:
        """:meth:`release` with a checked lease."""
        raise NotImplementedError(f"{type(self).__name__} has no _release()")

    # --- built on the public methods ---------------------------------------------------------

    async def iter_sessions(self, **filters: Any) -> AsyncIterator[SessionHeader]:
        """Every header that :meth:`list` would return with these filters, page by page."""
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
