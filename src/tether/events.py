"""Typed events the session runtime publishes, and the bus that delivers them.

Subscribe with :meth:`tether.Sessions.subscribe` (or ``AsyncSessions.subscribe``)::

    sessions.subscribe(lambda event: print(event), tether.events.SessionSaved)

Events are delivered after the fact, in order, to every matching handler. A handler that
raises never undoes or corrupts the save it hears about: its exception is logged (logger
``tether.events``, with the traceback) and the remaining handlers still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ._sync_async import refuse_awaitable, resolve
from .models import SessionStatus

__all__ = [
    "ActionExecuted",
    "ConflictDetected",
    "Event",
    "EventHandler",
    "LoadFailed",
    "SaveFailed",
    "SessionArchived",
    "SessionCreated",
    "SessionDeleted",
    "SessionForked",
    "SessionLoaded",
    "SessionSaved",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Something that happened to a session."""

    session_id: str
    at: datetime


# The events that carry the same payload share one dataclass for it; each event is then a
# type of its own (what handlers subscribe to), with no fields to repeat.


@dataclass(frozen=True)
class _VersionEvent(Event):
    version: int
    """The session's version after what happened (0 from ``archive_inactive``, which does not
    read it back)."""


@dataclass(frozen=True)
class _FailureEvent(Event):
    error: Exception
    """What was raised (it is raised to the caller as well)."""


class SessionCreated(_VersionEvent):
    """A session was created (``create``, or ``fork``'s child); a :class:`SessionSaved` comes
    first."""


class SessionLoaded(_VersionEvent):
    """A session was read (``get``)."""


class LoadFailed(_FailureEvent):
    """Reading a session raised (``get``, or ``execute`` before its action)."""


@dataclass(frozen=True)
class ActionExecuted(Event):
    action: str
    before_version: int
    after_version: int
    before_status: SessionStatus
    after_status: SessionStatus


class SessionSaved(_VersionEvent):
    """A session was written: created, or changed by ``execute``."""


class SaveFailed(_FailureEvent):
    """Writing a session raised (a conflict only once it is not retried)."""


@dataclass(frozen=True)
class ConflictDetected(Event):
    expected_version: int | None
    actual_version: int | None
    attempt: int
    """1 for the first conflict of a call; more when retries conflict again."""
    will_retry: bool


@dataclass(frozen=True)
class SessionForked(Event):
    parent_id: str
    fork_seq: int


@dataclass(frozen=True)
class SessionDeleted(Event):
    pass


class SessionArchived(_VersionEvent):
    """A session was archived (``archive``, ``archive_inactive``)."""


_E = TypeVar("_E", bound=Event)

EventHandler = Callable[[Event], Any]
"""A function of one event. In ``AsyncSessions`` it may also be a coroutine function."""


class EventBus:
    """Handlers by event type; delivery that can never break the caller."""

    def __init__(self) -> None:
        self._handlers: list[tuple[EventHandler, tuple[type[Event], ...]]] = []

    def subscribe(self, handler: Callable[[_E], Any], *types: type[_E]) -> None:
        """Call ``handler`` for events of ``types`` (all events if none are given)."""
        for kind in types:
            if not (isinstance(kind, type) and issubclass(kind, Event)):
                raise TypeError(f"{kind!r} is not a tether event type")
        self._handlers.append((handler, types or (Event,)))  # type: ignore[arg-type]

    def unsubscribe(self, handler: EventHandler) -> None:
        before = len(self._handlers)
        self._handlers = [(h, t) for h, t in self._handlers if h is not handler]
        if len(self._handlers) == before:
            raise LookupError(f"{handler!r} is not subscribed")

    def _matching(self, event: Event) -> list[EventHandler]:
        return [h for h, types in self._handlers if isinstance(event, types)]

    def publish(self, event: Event) -> None:
        for handler in self._matching(event):
            try:
                refuse_awaitable(
                    handler(event),
                    "an async event handler was subscribed to the sync Sessions; "
                    "use AsyncSessions, or a plain function",
                )
            except Exception:
                log.exception("event handler %r failed on %r", handler, event)

    async def publish_async(self, event: Event) -> None:
        for handler in self._matching(event):
            try:
                await resolve(handler(event))
            except Exception:
                log.exception("event handler %r failed on %r", handler, event)
