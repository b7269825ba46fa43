"""The session runtime, async side; tools/unasync.py writes the sync side from it.

One object to create, load, change, fork, list and retire sessions over any store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import _core
from ._cache import detach
from ._sessions_common import ACTIVE, warn_skipped
from ._sessions_core_async import _AsyncSessionsCore
from .actions import Archive, ClearHistory, OpenReviews
from .errors import (
    AlreadyClaimed,
    ConflictError,
    InvalidRequest,
    SessionNotFound,
    TetherError,
    UnsupportedSchemaVersion,
)
from .events import LoadFailed, SessionArchived, SessionDeleted, SessionLoaded
from .hooks import HookContext, HookStage
from .models import HistoryItem, Lease, Page, Session, SessionHeader, SessionStatus
from .stores.abilities import AsyncPurges, missing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # pydantic's dependency; Python 3.11 has it in typing

    from .stores.base import ListFilters

__all__ = ["AsyncSessions"]


class AsyncSessions(_AsyncSessionsCore):
    """Sessions over one store: ``AsyncSessions("sqlite:///app.db")`` or over a store object.

    ``cache_size`` sessions are kept in this process so that loading one this object already
    holds fetches only what is new (0 turns the cache off). ``clock`` is used for
    ``archive_inactive`` and event times. ``session_factory`` builds the session :meth:`create`
    stores from its arguments (default :class:`~tether.Session`; see docs/runtime.md).
    :meth:`close` closes the store only if this object
    opened it (from a URL or the default); a store object passed in is the caller's to close.
    """

    async def get(self, session_id: str) -> Session:
        """The whole session (``after_load`` hooks run on it). Raises SessionNotFound."""
        try:
            loaded = detach(await self._fetch(session_id))
        except TetherError as exc:
            self._cache.drop(session_id)
            await self._emit(LoadFailed(session_id, self._clock(), exc))
            raise
        result = loaded
        if self._hooks.hooks:  # no hooks (most runtimes): no context to build
            ctx = HookContext(HookStage.AFTER_LOAD, "get", loaded)
            await self._run_hooks(HookStage.AFTER_LOAD, ctx)
            result = ctx.session
        if self._listened():
            await self._emit(SessionLoaded(session_id, self._clock(), loaded.version))
        return result

    async def info(self, session_id: str) -> SessionHeader:
        """The header alone: no history is read."""
        return (await self.store.load(session_id, last=0)).header

    async def exists(self, session_id: str) -> bool:
        return await self.store.exists(session_id)

    async def history(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[HistoryItem]:
        """A window of the history: the last N items, or the items after a ``seq``; with
        ``limit``, at most that many of the window's oldest items (see ``Store.load``).

        Served from the cache when this object holds the session (refreshed with only what
        is new), else read from the store as just that window.
        """
        _core.check_window(last, after, limit)
        if self._cache.get(session_id) is None:
            loaded = await self.store.load(session_id, last=last, after=after, limit=limit)
            return loaded.history
        session = await self._fetch(session_id)
        # the cached history is whole and contiguous from first_seq: the window is arithmetic
        start = 0 if after is None else max(0, after - session.first_seq + 1)
        if last is not None:
            start = max(start, len(session.history) - last)
        return session.history[start : None if limit is None else start + limit]

    def iter_history(
        self, session_id: str, *, after: int | None = None, page_size: int = 1000
    ) -> AsyncIterator[HistoryItem]:
        """Every item of the history (after ``after``), a page of ``page_size`` at a time,
        read from the store (never the cache), so memory holds one page however long the
        history: ``async for item in sessions.iter_history(id)``. Raises ``ConflictError`` if
        the history is replaced between two pages; see ``Store.iter_history``."""
        return self.store.iter_history(session_id, after=after, page_size=page_size)

    async def list(self, *, include_archived: bool = False, **filters: Unpack[ListFilters]) -> Page:
        """Headers, newest first, with the store's filters (those of ``Store.list``: ``owner``,
        ``agent``, ``status``, ``metadata``, ``updated_after``, ``updated_before``, ``limit``)
        and cursor pages (``cursor``).

        Archived sessions are left out unless ``include_archived`` or a ``status`` asks for them.
        """
        if filters.get("status") is None and not include_archived:
            filters["status"] = sorted(ACTIVE)
        return await self.store.list(**filters)

    async def for_owner(self, owner: str, **filters: Any) -> Page:
        """The sessions of one user or tenant (see :meth:`list` for the filters)."""
        return await self.list(owner=owner, **filters)

    # --- retiring sessions ---------------------------------------------------------------------

    async def delete(
        self, session_id: str, *, lease: Lease | None = None, force: bool = False
    ) -> bool:
        """Delete a session and its history; False if there was none.

        A session a runner holds (a live lease) is refused with
        :class:`~tether.errors.AlreadyClaimed`, as every write is, unless you pass that
        runner's ``lease`` (the holder deleting its own session) or ``force=True`` (an operator
        clearing a stuck session). A session stored by a newer tether is never deleted
        (:class:`~tether.errors.UnsupportedSchemaVersion`).
        """
        if lease is None and force is False:  # a store written before lease= still works here
            deleted = await self.store.delete(session_id)
        else:
            deleted = await self.store.delete(session_id, lease=lease, force=force)
        self._cache.drop(session_id)
        if deleted:
            await self._emit(SessionDeleted(session_id, self._clock()))
        return deleted

    async def archive(self, session_id: str) -> Session:
        """Status ``archived``: kept, out of default listings; :class:`Resume` brings it back."""
        archived = await self.execute(session_id, Archive(), retries=3)
        await self._emit(SessionArchived(session_id, self._clock(), archived.version))
        return archived

    async def archive_inactive(self, days: float = 30) -> int:
        """Archive every session not updated for ``days``; returns how many were archived.

        Sessions being written meanwhile (a conflict) or held by a runner (a claim) are skipped:
        they are not inactive. So are sessions ``waiting`` for a human: their open reviews stay
        listed by ``pending_reviews()`` until answered.
        """
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
            raise InvalidRequest(f"days must be a number >= 0, not {days!r}")
        cutoff = self._clock() - timedelta(days=days)
        statuses = sorted(ACTIVE - {SessionStatus.WAITING.value})
        stale = [
            h.id async for h in self.store.iter_sessions(status=statuses, updated_before=cutoff)
        ]
        count = 0
        for session_id in stale:
            try:
                await self.execute(session_id, Archive())
            except (ConflictError, AlreadyClaimed, SessionNotFound, OpenReviews):
                continue  # OpenReviews: it started waiting for a human after the listing
            await self._emit(SessionArchived(session_id, self._clock(), 0))
            count += 1
        return count

    async def clear(self, session_id: str) -> Session:
        """Empty the history of the same session; state, options and metadata are kept."""
        return await self.execute(session_id, ClearHistory(), retries=3)

    async def clear_all(self, *, confirm: bool = False, force: bool = False) -> int:
        """Delete every session in the store; refuses unless ``confirm=True``. Returns how many.

        It goes through every session, never stopping half-way: one a runner holds (a live
        lease) is skipped, and left as it is, unless ``force=True`` deletes it anyway; one a
        newer tether stored is always skipped. The skipped ones are named in a warning on the
        ``tether.sessions`` logger (and are still listed by :meth:`list`).
        """
        if confirm is not True:
            raise InvalidRequest(
                "clear_all() deletes every session in the store and cannot be undone; "
                "call clear_all(confirm=True) if that is what you want"
            )
        if not isinstance(force, bool):
            raise InvalidRequest(f"force must be True or False, not {force!r}")
        ids = [h.id async for h in self.store.iter_sessions(limit=500)]
        count = 0
        held: list[str] = []
        newer: list[str] = []
        for session_id in ids:
            try:
                if await self.delete(session_id, force=force):
                    count += 1
            except AlreadyClaimed:
                held.append(session_id)
            except UnsupportedSchemaVersion:
                newer.append(session_id)
        self._cache.clear()
        warn_skipped(held, newer)
        return count

    async def purge_expired(self) -> int:
        """Delete sessions whose ``expires_at`` has passed, for stores that keep them until then.

        Expired sessions already behave as missing; this reclaims their space. Returns how many
        were removed (0 on stores whose expiry is native, such as Redis).
        """
        if not isinstance(self.store, AsyncPurges):
            raise missing(self.store, AsyncPurges)
        return await self.store.purge_expired()

    async def close(self) -> None:
        """Forget the cache; close the store if this object opened it (not one passed in)."""
        self._cache.clear()
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> AsyncSessions:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
