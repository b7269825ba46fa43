"""tether as the session of the OpenAI Agents SDK (``pip install 'tether[openai-agents]'``).

``TetherSession(session_id, store_or_url)`` implements the SDK's ``Session`` protocol (the SDK
asks third parties not to inherit its ``SessionABC``): items are the SDK's Responses-API dicts,
stored exactly as given (nothing of tether's reaches the model), on any built-in store, sync or
async. What it adds to the SDK's own backends:

* **Compare-and-replace compaction.** ``_get_compaction_snapshot`` hands the runner a snapshot
  whose ``replace_suffix`` is one versioned ``replace_tail``: if anything was written after the
  snapshot, the replacement writes nothing and returns False (the SDK then keeps the history).
* **Exclusive runs** (``exclusive=True``): the session object claims the session's lease at its
  first call and renews it in the background until it is closed, so a second runner (another
  process, or another ``TetherSession`` in this one) fails at its first call, before any model
  call, with :class:`~tether.errors.AlreadyRunning`.
* **Durable approvals**: :meth:`TetherSession.save_run_state` stores an interrupted run's
  ``RunState`` beside the history in the same write as the session's status (``waiting``), and
  lists its approvals where ``tether reviews`` / ``Agent.pending_reviews()`` see them;
  :meth:`TetherSession.load_run_state` rebuilds the ``RunState`` in any process with the
  answers given there (``tether approve`` / ``deny``) applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._extras import requires_extra

with requires_extra("openai_agents", "the OpenAI Agents SDK", "openai-agents"):
    from agents.memory.session import _CompactionSnapshot
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )

from .. import _core
from .._closing import AsyncClosing
from .._registry import open_async_store
from .._time import to_micros
from ..agent import Review, stored
from ..errors import (
    AlreadyClaimed,
    AlreadyRunning,
    ConflictError,
    InvalidRequest,
    InvalidSessionData,
    LeaseLost,
    SessionExists,
    SessionNotFound,
)
from ..ids import encode_external_id, external_id_metadata
from ..models import KeyedItem, Lease, Session, SessionStatus, StoredItem
from ..stores.base import AsyncStore, Store, SyncBackedAsyncStore
from ..stores.memory import MemoryStore
from ._openai_agents_items import (
    FRAMEWORK,
    _as_new,
    _is_event,
    _nothing_replaced,
    _review,
    _sdk_items,
    _Seen,
)

if TYPE_CHECKING:
    from agents import Agent, RunContextWrapper, RunState
    from agents.items import TResponseInputItem

__all__ = ["FRAMEWORK", "TetherSession"]


_RUN_STATE = "run_state"
_ANY = 2**62  # "every item" for a compaction snapshot read with no real bound


class TetherSession(AsyncClosing):
    """An OpenAI Agents SDK session stored in tether.

    ``session_id`` is the SDK's id (any string: it is stored under
    ``tether.ids.encode_external_id(session_id)``). ``store_or_url`` is a store URL
    (``sqlite:///app.db``, ``redis://...``, ``postgresql://...``; the session then opens and
    closes the store itself), an :class:`~tether.AsyncStore` or a sync :class:`~tether.Store`
    (called from worker threads). ``session_settings`` is the SDK's (``limit``: the default
    number of newest items ``get_items`` returns).

    ``cache``: keep the items read, so that the next ``get_items`` reads only what is new
    (see :meth:`get_items`). ``exclusive=True``: see the module docstring; ``owner`` names the
    holder in ``AlreadyRunning`` and ``tether show`` (default ``openai-agents@host:pid``),
    ``lease_ttl`` (seconds) bounds how long a crashed runner blocks the session. Close the session
    (``await session.close()`` or ``async with``) to release the lease at once.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store_or_url: str | AsyncStore | Store,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
        *,
        exclusive: bool = False,
        owner: str | None = None,
        lease_ttl: float = 60.0,
        metadata: Mapping[str, Any] | None = None,
        cache: bool = True,
    ) -> None:
        if not isinstance(session_id, str):
            raise InvalidRequest(f"session_id is a str, not {type(session_id).__name__}")
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings)  # type: ignore[arg-type]
            if session_settings is not None
            else SessionSettings()
        )
        self.tether_id = encode_external_id(session_id)
        """The id of the tether session that holds this SDK session (``tether show`` it)."""
        self._url: str | None = None
        self._store: AsyncStore | None = None
        if isinstance(store_or_url, str):
            self._url = store_or_url
        elif isinstance(store_or_url, AsyncStore):
            self._store = store_or_url
        elif isinstance(store_or_url, Store):
            wrapped = SyncBackedAsyncStore(store_or_url)
            # The memory store never blocks: a thread per call would only cost time.
            wrapped.offload = not isinstance(store_or_url, MemoryStore)
            self._store = wrapped
        else:
            raise InvalidRequest(
                "store_or_url is a store URL, a tether.AsyncStore or a tether.Store, not "
                f"{type(store_or_url).__name__}"
            )
        if not isinstance(lease_ttl, (int, float)) or not 0 < lease_ttl <= 86_400:
            raise InvalidRequest(
                f"lease_ttl is a number of seconds in (0, 86400], not {lease_ttl!r}"
            )
        self.exclusive = exclusive
        self.owner = owner or f"{FRAMEWORK}@{socket.gethostname()}:{os.getpid()}"
        self.lease_ttl = float(lease_ttl)
        # the metadata of a session this object creates: built only when it creates one (an
        # application making an object per request mostly reads and appends)
        self._given_metadata = dict(metadata) if metadata else None
        self._lease: Lease | None = None
        self._lease_lost: BaseException | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._claiming = asyncio.Lock() if exclusive else None
        self._cache = cache
        self._seen: _Seen | None = None

    # --- the Session protocol ------------------------------------------------------------------

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The newest ``limit`` items (default ``session_settings.limit``; all when None),
        oldest first, exactly as they were added; ``[]`` for ``limit <= 0``.

        The items this object read are kept (``cache=True``): the next call reads only what
        came after them, and reads the whole history again if anyone else wrote meanwhile.
        The item dicts are shared between calls: treat them as read-only (the SDK's runner
        does; ``cache=False`` returns new dicts every time)."""
        store = await self._ready()
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is not None and wanted <= 0:
            return []
        seen = await self._refreshed(store)
        if seen is not None:
            return seen.tail(wanted)  # type: ignore[return-value]
        window = wanted
        while True:
            try:
                session = await store.load(self.tether_id, last=window)
            except SessionNotFound:
                return []
            items = _sdk_items(session)
            whole = len(session.history) >= session.history_len
            if whole and self._cache:
                self._seen = _Seen(session, items)
                return self._seen.tail(wanted)  # type: ignore[return-value]
            if wanted is None or len(items) >= wanted or whole:
                return items[-wanted:] if wanted is not None else items  # type: ignore[return-value]
            window = 2 * max(window or 1, 1)  # tether's own events sat among the newest

    async def _refreshed(self, store: AsyncStore) -> _Seen | None:
        """What this object read, brought up to date with one read of what came after it;
        None (and forgotten) if it cannot be (nothing held, someone else wrote)."""
        seen, self._seen = self._seen, None
        if seen is None:
            return None
        try:
            fresh = await store.load(self.tether_id, after=seen.last_seq)
        except SessionNotFound:
            return None
        if not seen.extend(fresh):
            return None
        self._seen = seen
        return seen

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Append one batch, in order, in one atomic write (a blind append: concurrent batches
        never conflict). An item that is not plain JSON raises ``TypeError``, as the SDK's
        ``json.dumps``-based sessions do, and nothing is written."""
        store = await self._ready()
        batch = list(items)
        for item in batch:
            if not isinstance(item, Mapping):
                raise TypeError(f"a session item is a dict, not {type(item).__name__}")
        if not batch:
            return
        seen, self._seen = self._seen, None  # whatever happens below, until it is known
        try:
            try:
                version = await store.append(self.tether_id, batch, lease=self._lease)
            except SessionNotFound:
                pass
            else:
                if seen is not None and seen.wrote(version):
                    self._seen = seen  # only this append since: the next read joins it
                return
            try:
                await store.create(self._new_session(batch))
            except SessionExists:  # created by another writer meanwhile
                await store.append(self.tether_id, batch, lease=self._lease)
        except InvalidSessionData as exc:
            raise TypeError(f"session items must be plain JSON: {exc}") from exc

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item (``None`` if there is none): a versioned
        truncation of the tail, so two callers never pop the same item."""
        store = await self._ready()
        last: int | None = 8  # the newest items, unless they are all tether's events
        while True:
            try:
                session = await store.load(self.tether_id, last=last)
            except SessionNotFound:
                return None
            sdk = [e for e in session.items if not _is_event(e)]
            if not sdk:
                if last is not None and len(session.items) < session.history_len:
                    last = None  # only tether's events among the newest: read the whole tail
                    continue
                return None
            newest = sdk[-1]
            # tether's own events after it (an approval answered) stay, in their order
            kept = [_as_new(e) for e in session.items if e.seq > newest.seq]
            try:
                await store.replace_tail(
                    self.tether_id, session.version, newest.seq - 1, kept, lease=self._lease
                )
            except ConflictError:
                continue  # written meanwhile: pop what is the newest now
            return newest.item  # type: ignore[return-value]

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Remove every item. The session itself (its status, metadata and a saved run state)
        stays."""
        store = await self._ready()
        while True:
            try:
                session = await store.load(self.tether_id, last=0)
            except SessionNotFound:
                return
            if session.history_len == 0:
                return
            try:
                await store.replace_tail(
                    self.tether_id, session.version, session.first_seq - 1, lease=self._lease
                )
                return
            except ConflictError:
                continue

    # --- compaction hooks (looked up by the SDK's OpenAIResponsesCompactionSession) -------------

    async def _get_compaction_snapshot(
        self, limit: int, *, prune_prefix: Callable[[TResponseInputItem], bool] | None = None
    ) -> _CompactionSnapshot | None:
        """The newest ``limit`` items, whether they are the whole history, and a
        ``replace_suffix(start, output)`` that replaces the snapshot's items from ``start`` on
        only if the stored tail is still exactly those items (else False, nothing written)."""
        store = await self._ready()
        try:
            session = await store.load(self.tether_id, last=max(int(limit), 0))
        except SessionNotFound:
            return _CompactionSnapshot([], True, _nothing_replaced)
        complete = len(session.items) >= session.history_len
        # tether's own events (an approval answered) never reach the model
        rows = [e for e in session.items if not _is_event(e)]
        version = session.version

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            expected = rows[start:]
            if not expected:
                return False
            return await self._replace_suffix(version, expected, list(output), prune_prefix)

        return _CompactionSnapshot([e.item for e in rows], complete, replace_suffix)  # type: ignore[misc]

    async def _replace_suffix(
        self,
        version: int,
        expected: list[StoredItem],
        output: list[TResponseInputItem],
        prune_prefix: Callable[[TResponseInputItem], bool] | None,
    ) -> bool:
        store = await self._ready()
        after = expected[0].seq - 1
        while True:
            try:
                if prune_prefix is not None:
                    return await self._replace_pruned(version, after, output, prune_prefix)
                await store.replace_tail(self.tether_id, version, after, output, lease=self._lease)
                return True
            except ConflictError:
                # Another write landed since the snapshot. It may have left the tail alone (a
                # saved run state, a header change): compare the tail itself, as the SDK's
                # own backends do, and try again at the new version only if it is unchanged.
                try:
                    now = await store.load(self.tether_id, after=after)
                except SessionNotFound:
                    return False
                if [(e.seq, e.item) for e in now.items] != [(e.seq, e.item) for e in expected]:
                    return False
                if now.version == version:
                    return False
                version = now.version

    async def _replace_pruned(
        self,
        version: int,
        after: int,
        output: list[TResponseInputItem],
        prune_prefix: Callable[[TResponseInputItem], bool],
    ) -> bool:
        """The suffix replacement when the caller also drops a leading run of expired items:
        then the whole history is rewritten in one versioned write (rare: items expire)."""
        store = await self._ready()
        prefix = (await store.load(self.tether_id, limit=max(after, 1))).items
        prefix = [e for e in prefix if e.seq <= after]
        dropped = 0
        for entry in prefix:
            if not prune_prefix(entry.item):  # type: ignore[arg-type]
                break
            dropped += 1
        if dropped == 0:
            await store.replace_tail(self.tether_id, version, after, output, lease=self._lease)
            return True
        kept: list[Mapping[str, Any] | KeyedItem] = [
            KeyedItem(e.key, e.item) if e.key is not None else e.item for e in prefix[dropped:]
        ]
        await store.replace_history(self.tether_id, version, [*kept, *output], lease=self._lease)
        return True

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """Replace every item in one write (the SDK's manual compaction): never a clear
        followed by an add that a crash could split."""
        store = await self._ready()
        while True:
            try:
                session = await store.load(self.tether_id, last=0)
            except SessionNotFound:
                if items:
                    await self.add_items(items)
                return True
            try:
                await store.replace_tail(
                    self.tether_id,
                    session.version,
                    session.first_seq - 1,
                    list(items),
                    lease=self._lease,
                )
                return True
            except ConflictError:
                continue

    # --- durable approvals ---------------------------------------------------------------------

    async def save_run_state(self, state: RunState[Any, Any], **to_json: Any) -> list[Review]:
        """Store ``state`` (``result.to_state()`` of an interrupted run) beside the history.

        One write sets the saved state, the session's status (``waiting`` while approvals are
        pending, else ``hibernated``) and one tether review per pending approval, so
        ``tether reviews`` lists them and ``tether approve`` / ``deny`` answer them. Any
        process then calls :meth:`load_run_state` and resumes with ``Runner.run(agent,
        state, session=...)``. ``to_json`` goes to ``RunState.to_json`` (e.g.
        ``context_serializer=``). Returns the reviews it opened.
        """
        store = await self._ready()
        data = state.to_json(**to_json)
        interruptions = state.get_interruptions()
        now = to_micros(datetime.now(timezone.utc))
        while True:
            session = await self._header_or_new()
            rt = stored.runtime(session)
            reviews = [_review(self.tether_id, item, now) for item in interruptions]
            # A newer interruption of this session replaces the previous one's reviews.
            rt["reviews"] = [r for r in rt.get("reviews", []) if r.get("framework") != FRAMEWORK]
            rt["reviews"].extend(reviews)
            rt[FRAMEWORK] = {_RUN_STATE: data}
            status = (SessionStatus.WAITING if reviews else SessionStatus.HIBERNATED).value
            changes = {"state": stored.state_with(session.state, rt), "status": status}
            try:
                with _core.runtime_writes():
                    await store.commit(
                        self.tether_id, session.version, changes=changes, lease=self._lease
                    )
            except ConflictError:
                continue
            return [Review.from_json(r) for r in reviews]

    async def load_run_state(
        self, agent: Agent[Any], **from_json: Any
    ) -> RunState[Any, Any] | None:
        """The saved ``RunState`` (None if there is none), with every approval answered in tether
        (``tether approve`` / ``deny``, ``Agent.approve`` / ``deny``) applied to it: approved
        calls are approved, denied ones rejected with the denial's reason as the message the
        model sees. ``from_json`` goes to ``RunState.from_json`` (e.g.
        ``context_deserializer=``)."""
        from agents import RunState

        session = await self._header()
        if session is None:
            return None
        rt = stored.runtime(session)
        saved = (rt.get(FRAMEWORK) or {}).get(_RUN_STATE)
        if saved is None:
            return None
        state: RunState[Any, Any] = await RunState.from_json(agent, saved, **from_json)
        answers = {
            r["call_id"]: r
            for r in rt.get("reviews", [])
            if r.get("framework") == FRAMEWORK and r.get("decision") is not None
        }
        for item in state.get_interruptions():
            answer = answers.get(item.call_id or "")
            if answer is None:
                continue
            if answer["decision"] == "approved":
                state.approve(item)
            else:  # denied, or expired before anyone answered
                state.reject(item, rejection_message=answer.get("note") or None)
        return state

    async def discard_run_state(self, status: str = SessionStatus.FINISHED.value) -> None:
        """Forget the saved run state and its reviews once the run was resumed; set ``status``."""
        store = await self._ready()
        while True:
            session = await self._header()
            if session is None:
                return
            rt = stored.runtime(session)
            rt.pop(FRAMEWORK, None)
            rt["reviews"] = [r for r in rt.get("reviews", []) if r.get("framework") != FRAMEWORK]
            changes = {"state": stored.state_with(session.state, rt), "status": status}
            try:
                with _core.runtime_writes():
                    await store.commit(
                        self.tether_id, session.version, changes=changes, lease=self._lease
                    )
                return
            except ConflictError:
                continue

    async def pending_reviews(self) -> list[Review]:
        """The saved run's approvals nobody answered yet."""
        session = await self._header()
        if session is None:
            return []
        return [
            Review.from_json(r)
            for r in stored.runtime(session).get("reviews", [])
            if r.get("framework") == FRAMEWORK and r.get("decision") is None
        ]

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop renewing and release the lease (exclusive mode), close a store opened from a
        URL. The object can be used again afterwards (it claims again when exclusive). Leaving
        ``async with`` calls it; entering claims nothing (the first call, inside the run, does)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        lease, self._lease = self._lease, None
        if lease is not None and self._store is not None:
            with contextlib.suppress(LeaseLost):
                await self._store.release(lease)
        if self._url is not None and self._store is not None:
            store, self._store = self._store, None
            await store.close()

    # --- internals -----------------------------------------------------------------------------

    async def _ready(self) -> AsyncStore:
        """The store, with the lease held first in exclusive mode."""
        if self._store is None:
            assert self._url is not None
            self._store = open_async_store(self._url)
        if self._lease_lost is not None:
            raise self._lease_lost
        if self._claiming is not None and self._lease is None:
            async with self._claiming:
                if self._lease is None:
                    await self._claim(self._store)
        return self._store

    async def _claim(self, store: AsyncStore) -> None:
        if not await store.exists(self.tether_id):
            with contextlib.suppress(SessionExists):
                await store.create(self._new_session([]))
        try:
            self._lease = await store.claim(self.tether_id, self.owner, self.lease_ttl)
        except AlreadyClaimed as exc:
            raise AlreadyRunning(exc.session_id, exc.holder, exc.expires_at) from None
        self._renewer = asyncio.get_running_loop().create_task(self._renew(store))

    async def _renew(self, store: AsyncStore) -> None:
        """Keep the lease alive while the session is open: a long run never loses it, and a
        crashed process stops renewing, so its lease lapses after ``lease_ttl``."""
        while self._lease is not None:
            await asyncio.sleep(self.lease_ttl / 3)
            lease = self._lease
            if lease is None:
                return
            try:
                self._lease = await store.renew(lease, self.lease_ttl)
            except LeaseLost as exc:
                self._lease_lost = exc  # every later call raises it: stop, never overwrite
                return

    async def _header(self) -> Session | None:
        store = await self._ready()
        try:
            return await store.load(self.tether_id, last=0)
        except SessionNotFound:
            return None

    async def _header_or_new(self) -> Session:
        store = await self._ready()
        with contextlib.suppress(SessionNotFound):
            return await store.load(self.tether_id, last=0)
        with contextlib.suppress(SessionExists):
            await store.create(self._new_session([]))
        return await store.load(self.tether_id, last=0)

    def _new_session(self, items: list[TResponseInputItem]) -> Session:
        return Session(
            id=self.tether_id,
            metadata={
                **(self._given_metadata or {}),
                **external_id_metadata(self.session_id),
                "framework": FRAMEWORK,
            },
            status=SessionStatus.RUNNING,
            history=[dict(item) for item in items],
        )
