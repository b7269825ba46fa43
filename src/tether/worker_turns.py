"""Queued turns: submit a message, and run whatever a session has due, exactly once.

Used by ``tether worker`` (:mod:`tether.worker`) and the Celery integration
(:mod:`tether.integrations.celery`); usable on its own.

**Submitting.** :func:`submit` records the user's message before anything is queued: on an
idle session as a pending turn (the agent's ``after_prompt`` checkpoint: status
``hibernated``), so ``tether ls --status hibernated`` shows it and any worker can run it; on a
session that already has a turn pending or running, in the session's *inbox*, a companion
session ``<id>:inbox`` whose history holds the waiting messages in order (its status is
``hibernated`` while it holds one not yet run). A turn is never queued without its prompt
stored.

**Running.** :func:`drain` runs what a session has due, in order: it resumes the turn in
progress (hibernated, or ``running`` with an expired lease: its worker died), then starts a turn
for each inbox message, oldest first. Each inbox message is committed as the turn's prompt under
the key ``tether.inbox:<seq>``, so the store itself refuses to start it twice. Everything else
is the agent's: one runner per session (``AlreadyRunning``), a checkpoint after every step, a
``once`` tool that may have run becomes a review. Running ``drain`` twice, or on two workers at
once, does each turn once.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .agent import Agent, Hibernation, TurnResult, stored
from .errors import (
    AlreadyRunning,
    ConfigurationError,
    ConflictError,
    DuplicateItemKey,
    InvalidRequest,
    MissingSnapshot,
    SessionExists,
    SessionNotFound,
    TurnInProgress,
)
from .models import Session, SessionHeader, SessionStatus
from .stores.base import Store
from .worker_store import FencedStore, TurnCheckpointed, keyed_prompt

__all__ = [
    "INBOX_AGENT",
    "AgentFactory",
    "Drained",
    "Submitted",
    "drain",
    "due_sessions",
    "inbox_id",
    "load_factory",
    "submit",
]

log = logging.getLogger("tether.worker")

INBOX_AGENT = "tether.inbox"
"""The ``agent`` of inbox sessions (and their ids end in ``:inbox``)."""
_INBOX_SUFFIX = ":inbox"
_KEY_PREFIX = "tether.inbox:"
_MAX_ID = 128 - len(_INBOX_SUFFIX)
_RUNNABLE = frozenset({"new", "hibernated", "running", "finished"})

AgentFactory = Callable[[Store], Agent]
"""Builds the application's agent on the store it is given (a :class:`FencedStore`)."""


def inbox_id(session_id: str) -> str:
    """The id of ``session_id``'s inbox session."""
    if len(session_id) > _MAX_ID:
        raise InvalidRequest(
            f"sessions run by workers have ids of at most {_MAX_ID} characters (their inbox "
            f"is '<id>{_INBOX_SUFFIX}'); {session_id[:40]!r}... has {len(session_id)}"
        )
    return session_id + _INBOX_SUFFIX


def load_factory(spec: str | AgentFactory) -> AgentFactory:
    """``"module:function"`` (the working directory importable, as ``python -m`` does), or
    the function itself."""
    if not isinstance(spec, str):
        if not callable(spec):
            raise ConfigurationError(
                f"an agent factory is a function or 'module:function', {spec!r}"
            )
        return spec
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(
            f"the agent factory is 'module:function' (e.g. myapp.agents:make_agent), not {spec!r}"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"agent factory {spec}: cannot import {module_name!r}: {exc}"
        ) from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigurationError(
                f"agent factory {spec}: {module_name!r} has no {attr!r}"
            ) from None
    if not callable(found):
        raise ConfigurationError(
            f"agent factory {spec} is a {type(found).__name__}, not a function"
        )
    factory: AgentFactory = found
    return factory


def build_agent(factory: AgentFactory, store: FencedStore) -> Agent:
    """The factory's agent, checked to write through ``store`` (renewal and fencing live there)."""
    agent = factory(store)
    if not isinstance(agent, Agent):
        raise ConfigurationError(
            f"the agent factory returned a {type(agent).__name__}: it must return "
            "tether.agent.Agent(store, llm=..., tools=...) built on the store it is given"
        )
    if agent.store is not store:
        raise ConfigurationError(
            "the agent factory built its Agent on another store: build it on the store it is "
            "given (def make_agent(store): return Agent(store, ...)), which renews its leases"
        )
    return agent


# --- submitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """Where a submitted message waits: ``"turn"`` (a pending turn on the session itself) or
    ``"inbox"`` (behind the turn in progress, in the session's inbox)."""

    session_id: str
    queued: str


def submit(
    store: Store, session_id: str, message: str | Mapping[str, Any], *, create: bool = True
) -> Submitted:
    """Record ``message`` as the session's next turn; a worker runs it (module doc).

    With ``create`` (default), a session that does not exist is created first. Nothing is
    sent to any queue here: send the task (or let ``tether worker`` find the session) after
    this returns.
    """
    user = stored.user_item(message)  # checked before anything is written
    inbox = inbox_id(session_id)
    if not _inbox_pending(store, inbox):
        # fenced like every write of a turn; the lease is held for one commit: no renewer
        fenced = FencedStore(store, renew=False)
        agent = Agent(fenced, runner=f"submit:{socket.gethostname()}:{os.getpid()}")
        for _ in range(2):
            try:
                agent.run(session_id, user, checkpoint="after_prompt")
                return Submitted(session_id, "turn")
            except SessionNotFound:
                if not create:
                    raise
                with contextlib.suppress(SessionExists):  # or made meanwhile by another submit
                    store.create(Session(id=session_id))
            except (TurnInProgress, AlreadyRunning):
                break  # a turn is pending or running: this message waits behind it
    _append_to_inbox(store, session_id, inbox, user)
    return Submitted(session_id, "inbox")


def _inbox_pending(store: Store, inbox: str) -> bool:
    try:
        return store.load(inbox, last=0).status == SessionStatus.HIBERNATED
    except SessionNotFound:
        return False


def _append_to_inbox(store: Store, session_id: str, inbox: str, user: Mapping[str, Any]) -> None:
    while True:
        try:
            header = store.load(inbox, last=0)
        except SessionNotFound:
            try:
                store.create(
                    Session(
                        id=inbox,
                        agent=INBOX_AGENT,
                        status=SessionStatus.HIBERNATED,
                        metadata={"inbox_of": session_id},
                        history=[dict(user)],
                    )
                )
                return
            except SessionExists:
                continue
        try:
            store.commit(
                inbox,
                header.version,
                append=[dict(user)],
                changes={"status": SessionStatus.HIBERNATED},
            )
            return
        except ConflictError:
            continue  # another message or a worker's bookkeeping: read it again


# --- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drained:
    """What :func:`drain` did: turns finished, and why it stopped (``idle``: nothing due;
    ``waiting``: a review must be answered; ``error``: a failed turn to resume by hand;
    ``checkpointed``: the worker is stopping; or the session's other status)."""

    session_id: str
    finished: int
    stopped: str


def drain(
    agent: Agent, session_id: str, *, stopping: Callable[[], bool] = lambda: False
) -> Drained:
    """Run every turn ``session_id`` has due, in order (module doc).

    Raises :class:`~tether.errors.AlreadyRunning` if another runner holds the session (retry
    later: its lease ends by itself if it died), :class:`~tether.errors.LeaseLost` if this
    worker's lease was taken over mid-turn (the new holder finishes the turn), and the model's
    error if a turn failed (the session keeps the turn: ``error`` status, resumable).
    """
    if not isinstance(agent.store, FencedStore):
        raise ConfigurationError("drain needs an Agent built on a FencedStore (see build_agent)")
    store = agent.store
    finished = 0
    while True:
        if stopping() or store.stopping:
            return Drained(session_id, finished, "checkpointed")
        try:
            header = store.load(session_id, last=0)
        except SessionNotFound:
            return Drained(session_id, finished, "missing")
        snapshot = (header.state.get(stored.RESERVED) or {}).get("snapshot")
        status = header.status.value
        try:
            if snapshot and status in ("hibernated", "running"):
                outcome: TurnResult | Hibernation = agent.resume(session_id)
            elif snapshot or status not in ("new", "finished"):
                return Drained(session_id, finished, status)  # waiting, error, suspended...
            else:
                due = _next_inbox_message(store, session_id)
                if due is None:
                    return Drained(session_id, finished, "idle")
                key, message = due
                with keyed_prompt(key):
                    outcome = agent.run(session_id, message, checkpoint="none")
                _advance_inbox(store, session_id, key)
        except TurnCheckpointed:
            return Drained(session_id, finished, "checkpointed")
        except (MissingSnapshot, TurnInProgress, DuplicateItemKey):
            continue  # another worker moved the session on between our read and our claim
        if isinstance(outcome, TurnResult):
            finished += 1
        elif outcome.status == "waiting":
            return Drained(session_id, finished, "waiting")


def _next_inbox_message(store: Store, session_id: str) -> tuple[str, dict[str, Any]] | None:
    """The oldest inbox message not yet run, as (its key, the message); None, after marking
    the inbox idle, when every message has run."""
    inbox = inbox_id(session_id)
    while True:
        try:
            header = store.load(inbox, last=0)
        except SessionNotFound:
            return None
        if header.status != SessionStatus.HIBERNATED:
            return None
        consumed = int(header.state.get("consumed", 0) or 0)
        window = store.load(inbox, after=consumed, limit=200)
        keys = [f"{_KEY_PREFIX}{item['seq']}" for item in window.history]
        done = store.items_by_key(session_id, keys) if keys else {}
        for key, item in zip(keys, window.history, strict=True):
            if key not in done:
                message: dict[str, Any] = {
                    k: item[k] for k in ("role", "content", "name") if k in item
                }
                return key, message
        if window.history and window.history[-1]["seq"] < window.last_seq:
            _set_consumed(store, inbox, window.history[-1]["seq"])
            continue  # a long inbox: the next page
        try:  # all run: the inbox is idle unless a message came in since we read it
            store.commit(
                inbox,
                window.version,
                changes={"status": SessionStatus.FINISHED, "state": {"consumed": window.last_seq}},
            )
            return None
        except ConflictError:
            continue


def _advance_inbox(store: Store, session_id: str, key: str) -> None:
    """Best effort: remember how far the inbox has run (the keys stay the truth)."""
    _set_consumed(store, inbox_id(session_id), int(key.removeprefix(_KEY_PREFIX)))


def _set_consumed(store: Store, inbox: str, seq: int) -> None:
    for _ in range(5):
        header = store.load(inbox, last=0)
        if int(header.state.get("consumed", 0) or 0) >= seq:
            return
        try:
            store.commit(inbox, header.version, changes={"state": {"consumed": seq}})
            return
        except ConflictError:
            continue


# --- finding work --------------------------------------------------------------------------------


def due_sessions(
    store: Store, *, updated_before: datetime | None = None, page_size: int = 200
) -> list[str]:
    """Sessions with work due, oldest update first: a pending turn (``hibernated``), a pending
    inbox message (unless the turn before it waits for a review or failed), or a ``running``
    turn whose lease expired (its worker died). Read from the store's status index, never from
    histories. ``updated_before`` keeps only sessions not written since then (a queued task
    would have run them)."""
    now = datetime.now(timezone.utc)
    headers = list(
        store.iter_sessions(
            status=["hibernated", "running"], updated_before=updated_before, limit=page_size
        )
    )
    listed = {h.id: h for h in headers if h.agent != INBOX_AGENT}
    found: dict[str, datetime] = {}
    for header in headers:
        target = _target(store, header, listed, now)
        if target is not None:
            at = header.updated_at or now
            found[target] = min(at, found.get(target, at))
    return sorted(found, key=lambda session_id: (found[session_id], session_id))


def _target(
    store: Store, header: SessionHeader, listed: dict[str, SessionHeader], now: datetime
) -> str | None:
    if header.agent == INBOX_AGENT and header.id.endswith(_INBOX_SUFFIX):
        session_id = header.id[: -len(_INBOX_SUFFIX)]
        if session_id in listed:  # pending or running itself: draining it runs the inbox too
            return session_id
        try:  # messages behind a turn waiting for a human (or failed) wait with it
            status = store.load(session_id, last=0).status
        except SessionNotFound:
            return None
        return session_id if status.value in _RUNNABLE else None
    if header.status == SessionStatus.RUNNING:
        expires = header.lease_expires_at
        return header.id if expires is None or expires <= now else None
    return header.id
