# generated from src/tether/_sessions_core_async.py by tools/unasync.py, do not edit
"""The session runtime's core, sync side.

What every operation of :class:`~tether.Sessions` goes through: the store and the
process-local cache, hooks and events, creating a session (also a fork's child), fetching one
through the cache, ``execute`` (an action applied at the current version, retried on a
conflict) and ``fork`` (which ``execute`` runs for a Fork action). The public class (reading,
listing, retiring) is in ``sessions_async.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from . import _core
from ._cache import SessionCache, detach, header_only
from ._registry import open_store
from ._sessions_common import (
    SessionFactory,
    check_retries,
    check_runtime_block,
    fork_child,
    hooks_left_history,
    new_session,
    renumbered,
    saved_from_stamp,
    with_items,
)
from ._time import Clock, system_clock
from .actions import Action, Draft, Fork
from .errors import ConflictError, InvalidRequest, SessionNotFound, TetherError
from .events import (
    ActionExecuted,
    ConflictDetected,
    Event,
    EventBus,
    EventHandler,
    LoadFailed,
    SaveFailed,
    SessionCreated,
    SessionForked,
    SessionSaved,
)
from .hooks import HookContext, HookFunction, HookRegistry, HookStage, call_hook
from .models import HistoryItem, Lease, Session, SessionHeader, StoredItem
from .stores.abilities import ForksInStore, Restores
from .stores.base import Store

_E = TypeVar("_E", bound=Event)


class _SessionsCore:
    """The core :class:`~tether.Sessions` builds on (see the module's docstring)."""

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        cache_size: int = 256,
        clock: Clock = system_clock,
        session_factory: SessionFactory = Session,
    ) -> None:
        self._owns_store = not isinstance(store, Store)
        self.store: Store = store if isinstance(store, Store) else open_store(store)
        self._cache = SessionCache(cache_size)
        self._hooks = HookRegistry()
        self._events = EventBus()
        self._clock = clock
        self._session_factory = session_factory

    # --- hooks and events ----------------------------------------------------------------------

    def add_hook(
        self,
        stage: HookStage | str,
        fn: HookFunction,
        *,
        name: str | None = None,
        priority: int = 0,
    ) -> str:
        """Run ``fn(ctx)`` at ``stage``; returns the hook's name (for :meth:`remove_hook`)."""
        return self._hooks.add(stage, fn, name, priority)

    def remove_hook(self, name: str) -> None:
        self._hooks.remove(name)

    def subscribe(self, handler: Callable[[_E], Any], *types: type[_E]) -> None:
        """Deliver events of ``types`` (all if none) to ``handler``; see :mod:`tether.events`."""
        self._events.subscribe(handler, *types)

    def unsubscribe(self, handler: EventHandler) -> None:
        self._events.unsubscribe(handler)

    def _run_hooks(self, stage: HookStage, ctx: HookContext) -> None:
        ctx.stage = stage
        if not self._hooks.hooks:  # most runtimes have none: no per-stage list is built
            return
        for hook in self._hooks.for_stage(stage):
            call_hook(hook, ctx)

    def _emit(self, event: Event) -> None:
        self._events.publish(event)

    def _listened(self) -> bool:
        """Whether any handler is subscribed: a turn builds no events (and reads no clock)
        for nobody."""
        return bool(self._events._handlers)

    # --- create, get, list ---------------------------------------------------------------------

    def create(
        self,
        agent: str | None = None,
        *,
        session_id: str | None = None,
        id: str | None = None,  # the seeds' spelling, accepted as an alias of session_id
        owner: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        history: Iterable[Mapping[str, Any]] = (),
        expires_at: datetime | None = None,
    ) -> Session:
        """Create a session: the one entry point, through every create hook and event.

        Hooks: ``before_create`` -> ``before_save`` -> persist -> ``after_save`` ->
        ``after_create``. Raises :class:`~tether.errors.ConflictingSessionIds` if ``id`` and
        ``session_id`` disagree, :class:`~tether.errors.SessionExists` if the id is taken.
        """
        made = new_session(
            self._session_factory,
            agent,
            session_id=session_id,
            id=id,
            owner=owner,
            metadata=metadata,
            state=state,
            options=options,
            history=history,
            expires_at=expires_at,
        )
        return self._create(made, "create")

    def _create(
        self, session: Session, operation: str, exact: list[StoredItem] | None = None
    ) -> Session:
        given = list(session.history)  # what the hooks get; if they change it, no store copy
        ctx = HookContext(HookStage.BEFORE_CREATE, operation, session)
        self._run_hooks(HookStage.BEFORE_CREATE, ctx)
        self._run_hooks(HookStage.BEFORE_SAVE, ctx)
        try:
            created = self._persist_new(ctx.session, history_given=given, exact=exact)
        except TetherError as exc:
            self._emit(SaveFailed(ctx.session.id, self._clock(), exc))
            raise
        self._cache.put(created)
        after = HookContext(HookStage.AFTER_SAVE, operation, detach(created))
        self._run_hooks(HookStage.AFTER_SAVE, after)
        self._emit(SessionSaved(created.id, self._clock(), created.version))
        after.session = detach(created)
        self._run_hooks(HookStage.AFTER_CREATE, after)
        self._emit(SessionCreated(created.id, self._clock(), created.version))
        return detach(created)

    def _persist_new(
        self,
        session: Session,
        history_given: list[HistoryItem],
        exact: list[StoredItem] | None = None,
    ) -> Session:
        """Store a new session; a fork whose store can copy the prefix itself lets it.

        The store copies only when the hooks left the child's history exactly as the fork made
        it (the same item objects); otherwise the child is created from its history as it stands.
        ``exact`` is a fork's prefix of the parent's stored items: while the hooks leave the
        history alone, a store without ``fork_session`` is given those through ``restore`` (each
        under its key, with its commit timestamp, the item object as stored), so the child holds
        the same items as on a store that forks natively.
        """
        at = session.fork_seq
        if exact is None or not hooks_left_history(session, history_given):
            return self.store.create(session)
        items = renumbered(exact)
        if isinstance(self.store, ForksInStore) and at is not None:
            try:
                header: SessionHeader = self.store.fork_session(session, at)
            except NotImplementedError:
                pass
            else:
                return with_items(Session.model_construct(**dict(header)), items)
        # No fork_session: write the child with restore(), which takes the items exactly as
        # given (keys and commit timestamps too), in one atomic step; create() could not, as it
        # stamps each item with the time of the write and some stores refuse keyed items there.
        now = self._clock()
        child = with_items(
            session.model_copy(
                update={
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                    "last_seq": len(items),
                    "history_len": len(items),
                }
            ),
            items,
        )
        try:
            if not isinstance(self.store, Restores):
                raise NotImplementedError
            self.store.restore(child)  # a live session of that id: SessionExists, as create raises
        except NotImplementedError:  # a store without restore: the items, without their keys
            plain = [item.item for item in exact]
            return self.store.create(session.model_copy(update={"history": plain}))
        return child  # exactly what restore wrote (tests/test_fork_exact_items.py compares)

    def _fetch(self, session_id: str, written: int | None = None) -> Session:
        """The whole session, through the cache: nothing is read when the store's change mark
        says nothing was written since the cached copy was read (the embedded SQLite store
        tells); only what is new when nobody wrote since, or only this object (``written``:
        the version its write made); else all of it."""
        cache = self._cache
        # taken before the read (a later write moves it), and only for a cache that keeps it
        mark = self.store._change_mark(session_id) if cache.size else None
        cached = cache.current(session_id, mark)
        if cached is not None:
            return cached
        cached = cache.get(session_id)
        if cached is not None:
            fresh = self.store.load(session_id, after=cached.last_seq)
            merged = cache.merge(cached, fresh, written)
            if merged is not None:
                cache.put(merged, mark)
                return merged
        loaded = self.store.load(session_id)
        cache.put(loaded, mark)
        return loaded

    def _held(self, session_id: str) -> Session | None:
        """The session as this object holds it, detached as :meth:`get` returns it, without
        reading the store; None if it holds none, or if a ``get`` would do more than read
        (``after_load`` hooks to run, event handlers to tell). For tether's own code that
        writes next at this version (the agent's first commit of a turn): the write conflicts
        if anyone wrote since, and the caller then reads the session with ``get``."""
        if self._listened() or (self._hooks.hooks and self._hooks.for_stage(HookStage.AFTER_LOAD)):
            return None
        cached = self._cache.get(session_id)
        return None if cached is None else detach(cached)

    # --- changing a session --------------------------------------------------------------------

    def execute(
        self, session_id: str, action: Action, *, retries: int = 0, lease: Lease | None = None
    ) -> Session:
        """Apply ``action`` and commit it; returns the session as saved.

        Pipeline: load -> ``after_load`` -> the action -> ``after_action`` -> ``before_save`` ->
        commit -> ``after_save``. A stale version raises :class:`~tether.errors.ConflictError`;
        with ``retries=N`` an action that is ``retry_safe`` is re-applied to the reloaded
        session up to N more times. ``lease`` is passed to the store's commit (see claims).
        A :class:`~tether.actions.Fork` action returns the new child session instead.
        """
        kinds = type(action).__mro__  # a subclass's own MRO: no ABC instance checks
        if Action not in kinds and not isinstance(action, Action):
            raise InvalidRequest(f"execute() takes an Action, not {type(action).__name__}")
        if Fork in kinds and isinstance(action, Fork):  # the check only narrows the type
            return self.fork(session_id, action.new_id, at=action.at)
        check_retries(action, retries)
        # A retry_safe action on a session this object holds is committed against the cached
        # version without reading first: one store round trip when nobody else wrote since.
        # A ConflictError is the sign that the cache is behind (or that a write landed during
        # the pipeline: the two look the same); it counts as the first attempt, and the action
        # runs again on what is new, even with retries=0, as an execute that read the session
        # first would have run it. An action that is not retry_safe is never applied twice:
        # it reads what is new before it runs.
        optimistic = action.retry_safe and self._cache.get(session_id) is not None
        allowed = max(retries, 1) if optimistic else retries
        attempt = 0
        while True:
            try:
                return self._execute_once(session_id, action, lease, optimistic)
            except ConflictError as conflict:
                attempt += 1
                if not optimistic:  # the cached attempt's refresh reads only what is new
                    self._cache.drop(session_id)
                optimistic = False
                will_retry = attempt <= allowed
                self._emit(
                    ConflictDetected(
                        session_id,
                        self._clock(),
                        conflict.expected_version,
                        conflict.actual_version,
                        attempt,
                        will_retry,
                    )
                )
                if not will_retry:
                    self._emit(SaveFailed(session_id, self._clock(), conflict))
                    raise

    def _execute_once(
        self, session_id: str, action: Action, lease: Lease | None, optimistic: bool
    ) -> Session:
        cached = self._cache.get(session_id) if optimistic else None
        if cached is not None:
            try:
                return self._apply(session_id, action, lease, cached, optimistic=True)
            except SessionNotFound:  # deleted or expired meanwhile: the load below reports it
                self._cache.drop(session_id)
        try:
            if action.needs_history or self._cache.get(session_id) is not None:
                loaded = self._fetch(session_id)
            else:
                loaded = self.store.load(session_id, last=0)
        except TetherError as exc:
            self._emit(LoadFailed(session_id, self._clock(), exc))
            raise
        return self._apply(session_id, action, lease, loaded)

    def _apply(
        self,
        session_id: str,
        action: Action,
        lease: Lease | None,
        loaded: Session,
        *,
        optimistic: bool = False,
    ) -> Session:
        """The pipeline after the load: hooks, the action, the commit at ``loaded.version``."""
        # an action that does not read the history gets the header, as load(last=0) gives it;
        # the working copy is made when the action or a hook first asks for draft.session
        draft = Draft(loaded, copy=detach if action.needs_history else header_only)
        ctx: HookContext | None = None
        if self._hooks.hooks:  # no hooks: no context (it would ask for the working copy)
            ctx = HookContext(HookStage.AFTER_LOAD, "execute", draft.session, draft, action)
            self._run_hooks(HookStage.AFTER_LOAD, ctx)
        action.apply(draft)
        if self._hooks.hooks:
            if ctx is None:  # a hook added while the action ran
                ctx = HookContext(HookStage.AFTER_LOAD, "execute", draft.session, draft, action)
            self._run_hooks(HookStage.AFTER_ACTION, ctx)
            self._run_hooks(HookStage.BEFORE_SAVE, ctx)
        changes = draft.changes()
        check_runtime_block(draft, action)
        stamp: _core.CommitStamp | None = None
        try:
            if draft.replacement is not None:
                if changes:
                    raise InvalidRequest(
                        f"{action.name}: replacing the history and changing {sorted(changes)} "
                        "are two writes; run them as two actions"
                    )
                self.store.replace_history(
                    session_id, loaded.version, draft.replacement, lease=lease
                )
            elif "state" in changes:
                # state["_tether"] is as loaded (checked above) or set by tether's own action,
                # and the write is at the loaded version: commit it as the runtime's own
                with _core.runtime_writes():
                    stamp = self.store.commit_stamped(
                        session_id,
                        loaded.version,
                        append=draft.appended,
                        changes=changes,
                        lease=lease,
                    )
            else:  # no state written: runtime_writes() would change nothing the write reads
                stamp = self.store.commit_stamped(
                    session_id,
                    loaded.version,
                    append=draft.appended,
                    changes=changes or None,  # None: the store has nothing to check
                    lease=lease,
                )
        except ConflictError:
            raise  # execute() reports it and decides on a retry
        except TetherError as exc:
            if not (optimistic and isinstance(exc, SessionNotFound)):
                self._emit(SaveFailed(session_id, self._clock(), exc))
            raise
        # The session returned carries the store's commit time on its header and new items:
        # built from the stamp the store reported, with no read, when the cache holds the
        # session committed against; else read back (only the new items when the cache holds
        # the version committed against).
        saved = (
            None
            if stamp is None
            else saved_from_stamp(self._cache, loaded, changes, draft.appended, stamp)
        )
        if saved is None:
            saved = self._fetch(session_id, None if stamp is None else stamp.version)
        if self._hooks.hooks and self._hooks.for_stage(HookStage.AFTER_SAVE):
            self._run_hooks(
                HookStage.AFTER_SAVE, HookContext(HookStage.AFTER_SAVE, "execute", detach(saved))
            )
        if self._listened():
            self._emit(
                ActionExecuted(
                    session_id,
                    self._clock(),
                    action.name,
                    loaded.version,
                    saved.version,
                    loaded.status,
                    saved.status,
                )
            )
            self._emit(SessionSaved(session_id, self._clock(), saved.version))
        return detach(saved)

    def _follow_commit(
        self,
        session_id: str,
        expected_version: int,
        changes: Mapping[str, Any],
        appended: Sequence[HistoryItem],
        stamp: _core.CommitStamp,
    ) -> None:
        """Keep the cache current after tether's own code (the agent) committed through the
        store, at ``expected_version``, inside ``runtime_writes()``: a cached session at that
        version is brought to the commit from its ``stamp`` (as ``execute`` does), so the next
        read fetches only what is new, not the whole session. Anything else is left as it is
        (the next read sees that someone wrote and reads the session whole)."""
        cached = self._cache.get(session_id)
        if cached is not None and cached.version == expected_version:
            saved_from_stamp(self._cache, cached, changes, appended, stamp)

    # --- fork ----------------------------------------------------------------------------------

    def fork(self, session_id: str, new_id: str | None = None, *, at: int | None = None) -> Session:
        """A new session with the parent's history up to ``seq`` ``at`` (default: all of it).

        Runs through the create pipeline (``before_create`` ... ``after_create``) with
        operation ``fork``. The child records ``parent_id`` and ``fork_seq``; it copies the
        parent's owner, agent, metadata, state and options, but not the agent runtime's
        ``state["_tether"]`` (a turn in progress, its reviews, the last result): a fork never
        inherits work in flight, and its status is ``new`` (no history) or ``finished``, ready
        for a new turn. The parent is not changed, and its later writes are not seen by the child.
        """
        parent = self._fetch(session_id)
        made, exact, point = fork_child(parent, at, new_id)
        child = self._create(made, "fork", exact)
        self._emit(SessionForked(child.id, self._clock(), parent.id, point))
        return child
