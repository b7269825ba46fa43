"""Google ADK sessions in tether: :class:`TetherSessionService`.

``pip install 'tether[adk]'``. A drop-in for ADK's ``InMemorySessionService`` /
``DatabaseSessionService`` wherever ADK takes a ``BaseSessionService`` (``Runner``,
``adk web`` / ``adk api_server`` through ``--session_service_uri=tether:<store url>`` once
:func:`register` has run)::

    service = TetherSessionService(tether.open_async_store("sqlite:///app.db"))

How ADK's model maps onto tether (see ``docs/integrations/adk.md``):

- One tether session per ADK session, ``agent`` :data:`AGENT`, its id
  ``tether.ids.encode_external_id("s/<app>/<user>/<session>")`` (each part with ``%`` and ``/``
  escaped, so any app, user and session id, emails, spaces and slashes included, round-trips),
  the three originals in ``metadata`` (``list_sessions`` filters on them). Every stored event is
  one item ``{"type": "adk.event", "event": <the event's JSON object>}``, in append order (the
  CLI renders its text, function calls and responses).
- The session's own state, its ``last_update_time`` and the outbox (below) live in the
  header's ``state``; ``app:`` and ``user:`` state live in one tether session per app
  (``a/<app>``) and per app and user (``u/<app>/<user>``); ``temp:`` keys are never stored.
- **Stale writes**: ADK's revision slot (``Session._storage_update_marker``) carries the
  tether version the session was read or written at, and ``append_event`` is one tether commit
  at that version: a writer that got in between makes it a ``ConflictError``, raised as ADK's
  ``StaleSessionError``. Of two concurrent writers from one version exactly one wins.
- **Scoped state, all or nothing**: an event's ``app:`` / ``user:`` changes are written in the
  same commit as the event, as the session's outbox (``pending``), and then applied to the
  scope sessions, each of which records the last event it applied per origin session. A crash
  between the writes leaves the outbox in the session: the next read or write of that session
  completes it (applying is idempotent), so either all three scopes change or, until then,
  none is visible as half-done to that session's readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import ConflictError, SessionExists, SessionNotFound
from ..models import Session as TetherSession
from ..models import StoredItem
from ..stores.base import AsyncStore, Store, SyncBackedAsyncStore
from ._extras import requires_extra

with requires_extra("adk", "Google ADK", "adk"):
    from google.adk.errors import StaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events.event import Event
    from google.adk.sessions import _session_util
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session
    from google.adk.sessions.state import State

from ._adk_layout import (
    adk_session,
    app_scope,
    app_tid,
    delivered_before,
    enough,
    event_json,
    event_of,
    pending_outbox,
    session_tid,
    user_scope,
    user_tid,
)

__all__ = ["AGENT", "EVENT_TYPE", "SCHEME", "TetherSessionService", "register", "session_tid"]

AGENT = "google-adk"
"""The ``agent`` of every tether session that holds an ADK session."""
SCOPE_AGENT = "google-adk.scope"
"""The ``agent`` of the tether sessions holding ``app:`` and ``user:`` state."""
EVENT_TYPE = "adk.event"
"""The ``type`` of the items that hold events (the event's JSON form under ``event``)."""
SCHEME = "tether"
"""The URI scheme :func:`register` adds to ADK's service registry: ``tether:<store url>``."""

_UNREAD: Any = object()
_LIST_PAGE = 1000
_PAGE = 100  # get_session with after_timestamp / num_recent_events: newest items first
logger = logging.getLogger(__name__)


class TetherSessionService(BaseSessionService):
    """An ADK ``BaseSessionService`` backed by any tether store.

    ``store`` is an async store (``tether.open_async_store(url)``) or a sync one (its calls then
    run in a worker thread). ``uri`` (``tether:<store url>``, what ADK's registry passes) opens
    one instead; a store passed in is not closed by :meth:`close`, one opened from ``uri`` is.
    """

    def __init__(
        self, store: AsyncStore | Store | None = None, *, uri: str | None = None, **_: Any
    ) -> None:
        if (store is None) == (uri is None):
            raise TypeError("TetherSessionService takes a tether store or uri='tether:<url>'")
        self._owns_store = store is None
        if store is None:
            from .._registry import open_async_store

            assert uri is not None
            store = open_async_store(_store_url(uri))
        self.store: AsyncStore = store if isinstance(store, AsyncStore) else _threaded(store)

    async def close(self) -> None:
        """Close the store if this service opened it (from ``uri``)."""
        if self._owns_store:
            await self.store.close()

    # --- create / get / list / delete ------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session; its ``app:`` / ``user:`` keys go to the shared scopes.

        Raises ADK's ``AlreadyExistsError`` if ``session_id`` is taken for this app and user.
        """
        sid = session_id or str(uuid.uuid4())
        deltas = _session_util.extract_json_safe_state_delta(state or {})
        now = time.time()
        pending = pending_outbox("create", deltas)
        header = TetherSession(
            id=session_tid(app_name, user_id, sid),
            agent=AGENT,
            owner=None,
            metadata={"adk_app": app_name, "adk_user": user_id, "adk_session": sid},
            state={
                "state": deltas["session"],
                "last_update_time": now,
                "pending": pending,
                "order": {"ordered": True, "newest": None},
            },
        )
        try:
            created = await self.store.create(header)
        except SessionExists:
            raise AlreadyExistsError(f"Session with id {sid} already exists.") from None
        app_state, user_state = await self._complete(created.id, app_name, user_id, pending)
        return adk_session(
            app_name,
            user_id,
            sid,
            stored=created,
            events=[],
            app_state=app_state,
            user_state=user_state,
        )

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """The session with its events in timestamp order (ties by event id), or ``None``.

        ``config.after_timestamp`` keeps events at or after it; ``config.num_recent_events``
        the newest N of those. A pending outbox of the session is completed first.
        """
        tid = session_tid(app_name, user_id, session_id)
        after = config.after_timestamp if config is not None else None
        recent = config.num_recent_events if config is not None else None
        windowed = after is not None or recent is not None
        # the scopes are read alongside the session (one round trip, not three); an outbox
        # that changes them is then applied to what was read (compared, so a scope written in
        # between is read again)
        try:
            stored, *scopes = await asyncio.gather(
                self.store.load(tid, last=_PAGE if windowed else None),
                self._scope(app_tid(app_name)),
                self._scope(user_tid(app_name, user_id)),
            )
        except SessionNotFound:
            return None
        app_state, user_state = await self._complete(
            tid, app_name, user_id, stored.state.get("pending"), read=scopes
        )
        items = list(stored.items)
        if windowed and items and items[0].seq > stored.first_seq:
            order = stored.state.get("order")
            if isinstance(order, Mapping) and order.get("ordered") is True:
                items = await self._older(tid, stored.first_seq, items, after, recent)
            else:  # an event appended out of time order (or a session from before the flag)
                items = list((await self.store.load(tid)).items)
                items = [s for s in items if s.seq <= stored.last_seq]
        events = [event_of(entry.item) for entry in items if entry.item.get("type") == EVENT_TYPE]
        events.sort(key=lambda event: (event.timestamp, event.id))
        if config is not None:
            if config.after_timestamp is not None:
                events = [e for e in events if e.timestamp >= config.after_timestamp]
            if config.num_recent_events is not None:
                n = config.num_recent_events
                events = events[max(0, len(events) - n) :] if n else []
        return adk_session(
            app_name,
            user_id,
            session_id,
            stored=stored,
            events=events,
            app_state=app_state,
            user_state=user_state,
        )

    async def _older(
        self,
        tid: str,
        first_seq: int,
        items: list[StoredItem],
        after: float | None,
        recent: int | None,
    ) -> list[StoredItem]:
        """Pages before ``items`` until no older event can be returned: events are appended
        in time order (the session's ``order`` flag says so), so every unread one is at most
        as recent as the oldest read."""
        size = _PAGE
        while items[0].seq > first_seq:
            read = [event_of(s.item) for s in items if s.item.get("type") == EVENT_TYPE]
            if enough(read, after, recent):
                break
            lo = max(first_seq - 1, items[0].seq - 1 - size)
            page = await self.store.load(tid, after=lo, limit=items[0].seq - 1 - lo)
            older = [s for s in page.items if s.seq < items[0].seq]
            if not older:
                break
            items = older + items
            size = min(size * 2, 1000)
        return items

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The app's sessions (with ``user_id``: that user's), without events, oldest
        ``last_update_time`` first (ties by user id, then session id), each with its merged
        state. A listing of tether headers a page at a time, never a history."""
        wanted: dict[str, Any] = {"adk_app": app_name}
        if user_id is not None:
            wanted["adk_user"] = user_id
        # the listing and the scopes read at once (one round trip, not three)
        users: Any = (
            self._scope_values(user_tid(app_name, user_id))
            if user_id is not None
            # every user's state in one listing of the app's user scopes, not a read per user
            else self._headers(SCOPE_AGENT, user_scope(app_name, None))
        )
        headers, app_state, users = await asyncio.gather(
            self._headers(AGENT, wanted), self._scope_values(app_tid(app_name)), users
        )
        user_states: dict[str, dict[str, Any]] = {}
        if user_id is not None:
            user_states[user_id] = users
        else:
            for scope in users:
                values = scope.state.get("values", {})
                user_states[scope.metadata["adk_user"]] = dict(values)
        sessions = []
        for header in headers:
            uid = header.metadata["adk_user"]
            sessions.append(
                adk_session(
                    app_name,
                    uid,
                    header.metadata["adk_session"],
                    stored=header,
                    events=[],
                    app_state=app_state,
                    user_state=user_states.get(uid, {}),
                )
            )
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (nothing if there is none)."""
        await self.store.delete(session_tid(app_name, user_id, session_id))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's ``user:`` state, keys without the prefix (``{}`` if none)."""
        return await self._scope_values(user_tid(app_name, user_id))

    # --- append_event ----------------------------------------------------------------------

    async def append_event(self, session: Session, event: Event) -> Event:
        """Store ``event`` (unless partial) and its state changes in one compared commit.

        Raises ADK's ``StaleSessionError`` if the session was written since ``session`` was
        read (``session`` and storage are then unchanged), ``SessionNotFoundError`` if it is
        gone. ``temp:`` keys reach ``session.state`` but are never stored.
        """
        if event.partial:
            return event
        if delivered_before(session, event):
            # the same event delivered again (a broadcast to several references of one
            # session): stored once, its state applied once; distinct events sharing an id are not
            # deduplicated
            return event
        # temp: keys reach session.state (for the rest of the invocation) only once the write
        # is accepted: a refused event leaves the caller's session as it was
        temp = {
            key: value
            for key, value in (event.actions.state_delta or {}).items()
            if key.startswith(State.TEMP_PREFIX)
        }
        event = self._trim_temp_delta_state(event)
        tid = session_tid(session.app_name, session.user_id, session.id)
        try:
            header = await self.store.load(tid, last=1)
        except SessionNotFound:
            raise SessionNotFoundError(f"Session {session.id} not found.") from None
        version = _expected_version(session, header)
        # an outbox left by a crashed writer is completed before this event's own
        await self._complete(
            tid, session.app_name, session.user_id, header.state.get("pending"), read=False
        )
        deltas = _session_util.extract_json_safe_state_delta(event.actions.state_delta or {})
        pending = pending_outbox(event.id, deltas)
        values = {**header.state.get("state", {}), **deltas["session"]}
        item = {"type": EVENT_TYPE, "event": orjson.loads(event_json(event))}
        state: dict[str, Any] = {
            "state": values,
            "last_update_time": event.timestamp,
            "pending": pending,
        }
        order = header.state.get("order")
        if isinstance(order, Mapping):  # kept since the session began: keep it exact
            newest = order.get("newest")
            in_order = order.get("ordered") is True and (
                newest is None or event.timestamp >= newest
            )
            top = event.timestamp if newest is None else max(newest, event.timestamp)
            state["order"] = {"ordered": in_order, "newest": top}
        changes = {"state": state}
        try:
            new_version = await self.store.commit(tid, version, append=[item], changes=changes)
        except SessionNotFound:
            raise SessionNotFoundError(f"Session {session.id} not found.") from None
        except ConflictError:
            raise StaleSessionError(_stale(session, version)) from None
        session.state.update(temp)
        session.last_update_time = event.timestamp
        session._storage_update_marker = str(new_version)
        self._commit_event_to_session(session, event)
        try:
            await self._complete(tid, session.app_name, session.user_id, pending, read=False)
        except Exception:
            # The event and its outbox are stored: raising would tell the caller its write
            # failed when it did not (and its retry would be refused as stale). The next read
            # or write of this session completes the scopes.
            logger.warning(
                "ADK session %r: event %s is stored; its app:/user: changes are not applied yet "
                "and will be on the next read or write of this session",
                session.id,
                event.id,
                exc_info=True,
            )
        return event

    # --- the scopes and their outbox ---------------------------------------------------------

    async def _complete(
        self,
        origin: str,
        app_name: str,
        user_id: str,
        pending: Any,
        *,
        read: bool | list[TetherSession | None] = True,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply an outbox's ``app:`` / ``user:`` changes (if not yet applied); return the
        app and user state as they now are. ``read=False`` (``append_event``, which does not
        return them): a scope the outbox does not change is not read, ``{}`` stands for it;
        ``read=[app scope, user scope]``: the scopes as just read (``None``: absent)."""
        pending = pending if isinstance(pending, Mapping) else {}
        marker = pending.get("event")
        app_read, user_read = (read, read) if isinstance(read, bool) else read
        app_state = await self._apply(
            app_tid(app_name),
            origin,
            marker,
            pending.get("app"),
            app_scope(app_name),
            read=app_read,
        )
        user_state = await self._apply(
            user_tid(app_name, user_id),
            origin,
            marker,
            pending.get("user"),
            user_scope(app_name, user_id),
            read=user_read,
        )
        return app_state, user_state

    async def _headers(self, agent: str, metadata: Mapping[str, Any]) -> list[Any]:
        headers: list[Any] = []
        cursor: str | None = None
        while True:
            page = await self.store.list(
                agent=agent, metadata=metadata, limit=_LIST_PAGE, cursor=cursor
            )
            headers.extend(page.sessions)
            if page.next_cursor is None:
                return headers
            cursor = page.next_cursor

    async def _apply(
        self,
        tid: str,
        origin: str,
        marker: Any,
        delta: Mapping[str, Any] | None,
        metadata: Mapping[str, Any],
        *,
        read: bool | TetherSession | None = True,
    ) -> dict[str, Any]:
        """Merge ``delta`` into the scope session ``tid`` unless ``origin``'s ``marker`` is
        already recorded there (idempotent); compare-and-retry against concurrent writers.
        Without ``delta`` and ``read``: nothing to do, nothing read (``{}``). ``read`` a
        scope session (or ``None``: there was none): the scope as just read, the first try's."""
        if read is False and not delta:
            return {}
        given = read if not isinstance(read, bool) else _UNREAD
        while True:
            scope = given if given is not _UNREAD else await self._scope(tid)
            given = _UNREAD
            if scope is None:
                if not delta:
                    return {}
                with contextlib.suppress(SessionExists):
                    await self.store.create(
                        TetherSession(
                            id=tid,
                            agent=SCOPE_AGENT,
                            metadata=dict(metadata),
                            state={"values": {}, "applied": {}},
                        )
                    )
                continue
            values = dict(scope.state.get("values", {}))
            applied = dict(scope.state.get("applied", {}))
            if not delta or applied.get(origin) == marker:
                return values
            values.update(delta)
            applied[origin] = marker
            try:
                await self.store.commit(
                    tid, scope.version, changes={"state": {"values": values, "applied": applied}}
                )
            except ConflictError:
                continue
            return values

    async def _scope(self, tid: str) -> TetherSession | None:
        try:
            return await self.store.load(tid, last=0)
        except SessionNotFound:
            return None

    async def _scope_values(self, tid: str) -> dict[str, Any]:
        scope = await self._scope(tid)
        return {} if scope is None else dict(scope.state.get("values", {}))


def _stale(session: Session, version: Any) -> str:
    # ADK's own wording first ("modified in storage"), which callers match on
    return (
        f"The session {session.id!r} has been modified in storage since it was loaded (tether "
        f"version {version} is no longer current). Reload it with get_session before appending "
        "more events."
    )


def _expected_version(session: Session, header: Any) -> int:
    """The tether version ``session`` was read at.

    ADK's revision slot when it carries one. A ``Session`` without one (built by hand, or by
    another service) is current if storage has not moved past its ``last_update_time``, or if
    it holds exactly the stored events (a float that drifted on a round trip is no reason to
    refuse a writer that has seen everything)."""
    marker = session._storage_update_marker
    if marker is not None:
        try:
            return int(marker)
        except ValueError:
            raise StaleSessionError(_stale(session, marker)) from None
    if float(header.state.get("last_update_time", 0.0)) > session.last_update_time:
        last = header.items[-1].item.get("event") if header.items else None
        seen = session.events[-1] if session.events else None
        same_tail = (
            seen is not None
            and isinstance(last, dict)
            and last.get("id") == seen.id
            and header.history_len == len(session.events)
        )
        if not same_tail:
            raise StaleSessionError(_stale(session, "unknown"))
    return int(header.version)


def _store_url(uri: str) -> str:
    prefix = SCHEME + ":"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise ValueError(
            f"a tether session service URI is 'tether:<store url>' (e.g. "
            f"'tether:sqlite:///sessions.db'), not {uri!r}"
        )
    return uri[len(prefix) :]


def _factory(uri: str, **kwargs: Any) -> TetherSessionService:
    return TetherSessionService(uri=uri, **kwargs)


def register(registry: Any = None) -> None:
    """Register the ``tether`` scheme in ADK's service registry (the process-wide one by
    default), so ``--session_service_uri=tether:sqlite:///sessions.db`` (or any tether store
    URL after ``tether:``) picks this service. Call it from the agents directory's
    ``services.py``."""
    if registry is None:
        from google.adk.cli.service_registry import get_service_registry

        registry = get_service_registry()
    registry.register_session_service(SCHEME, _factory)


def _threaded(store: Store) -> AsyncStore:
    return SyncBackedAsyncStore(store)
