"""How ADK apps, users, sessions and events live in tether sessions (no I/O): the tether
ids (each part escaped, so any text round-trips), the metadata of the ``app:`` and ``user:``
scope sessions, an event's outbox, an event as a stored item and back, and the ADK
``Session`` built from what was read. :mod:`tether.integrations.adk` does the I/O."""

from __future__ import annotations

import operator
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from google.adk.events.event import Event
from google.adk.sessions import _session_util
from google.adk.sessions.session import Session
from google.adk.sessions.state import State
from pydantic_core import PydanticSerializationError

from ..ids import encode_external_id


def quote_part(part: str) -> str:
    # "%" first, so an escaped "/" can never be read back as a literal one
    return part.replace("%", "%25").replace("/", "%2F")


def session_tid(app_name: str, user_id: str, session_id: str) -> str:
    """The tether id of an ADK session."""
    return encode_external_id(
        f"s/{quote_part(app_name)}/{quote_part(user_id)}/{quote_part(session_id)}"
    )


def app_tid(app_name: str) -> str:
    return encode_external_id(f"a/{quote_part(app_name)}")


def user_tid(app_name: str, user_id: str) -> str:
    return encode_external_id(f"u/{quote_part(app_name)}/{quote_part(user_id)}")


_EVENT_ID = operator.attrgetter("id")


class _Seen:
    """The ids of the events in one ``Session``'s ``events`` list, as far as ``count``."""

    __slots__ = ("count", "events", "ids", "owner", "tail")

    def __init__(self, owner: weakref.ref[Any], events: list[Any]) -> None:
        self.owner = owner
        self.events = events
        self.count = 0
        self.tail: Any = None
        self.ids: set[str] = set()


# id(session) -> the ids of its events; an entry goes when its session does
_SEEN: dict[int, _Seen] = {}


def _forgetting(key: int) -> Callable[[weakref.ref[Any]], None]:
    def forget(ref: weakref.ref[Any]) -> None:
        entry = _SEEN.get(key)
        if entry is not None and entry.owner is ref:
            del _SEEN[key]

    return forget


def _seen_ids(session: Any) -> set[str]:
    """The ids in ``session.events``, kept up to date a new event at a time: each append
    looks at the events added since the last one only, not at the whole list (a scan of a
    long session's ids cost ~0.15 µs an event, ~0.7 ms an append at 5,000). Read again
    whole when the list is another object, is shorter, or no longer holds the last event
    seen at its place (an edit beyond appending); an event replaced in place before that one
    is not noticed (ADK and its ``Runner`` only ever append)."""
    events = session.events
    key = id(session)
    entry = _SEEN.get(key)
    count = len(events)
    if (
        entry is None
        or entry.owner() is not session
        or entry.events is not events
        or count < entry.count
        or (entry.count and events[entry.count - 1] is not entry.tail)
    ):
        entry = _SEEN[key] = _Seen(weakref.ref(session, _forgetting(key)), events)
    if count > entry.count:
        entry.ids.update(map(_EVENT_ID, events[entry.count :]))
        entry.count = count
        entry.tail = events[-1]
    return entry.ids


def delivered_before(session: Any, event: Any) -> bool:
    """Whether ``event`` (this object, or an equal one with its id) is already in
    ``session.events``. Its id is looked up in the session's index of ids first
    (:func:`_seen_ids`); only events that share the id are compared whole."""
    if event.id not in _seen_ids(session):
        return False
    return any(seen is event or (seen.id == event.id and seen == event) for seen in session.events)


def app_scope(app_name: str) -> dict[str, Any]:
    return {"adk_app": app_name, "adk_scope": "app"}


def user_scope(app_name: str, user_id: str | None) -> dict[str, Any]:
    """The metadata of a user scope's session (without ``user_id``: the filter for all of the
    app's)."""
    found: dict[str, Any] = {"adk_app": app_name, "adk_scope": "user"}
    if user_id is not None:
        found["adk_user"] = user_id
    return found


def pending_outbox(what: str, deltas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    # the marker a scope records once it has applied this outbox: unique per write, not the
    # event id (distinct events may share one, and a session deleted and created again must
    # not look applied)
    marker = f"{what}:{uuid.uuid4().hex}"
    return {"event": marker, "app": dict(deltas["app"]), "user": dict(deltas["user"])}


def event_of(item: Mapping[str, Any]) -> Event:
    # through JSON, not model_validate: bytes travel as base64 text in the event's JSON form
    return Event.model_validate_json(orjson.dumps(item["event"]))


def event_json(event: Event) -> str:
    """The event's JSON form; a state value JSON cannot hold (a callable) is stored as its
    text, as ADK's SQL services store it, rather than losing the whole event."""
    try:
        return event.model_dump_json(exclude_none=True)
    except PydanticSerializationError:
        safe_delta = _session_util.make_json_safe_state(event.actions.state_delta)
        actions = event.actions.model_copy(update={"state_delta": safe_delta})
        return event.model_copy(update={"actions": actions}).model_dump_json(exclude_none=True)


def enough(events: list[Event], after: float | None, recent: int | None) -> bool:
    """Whether no event older than ``events`` (none more recent than their oldest) can be
    among those ``after`` / ``recent`` select."""
    if recent == 0:
        return True
    if not events:
        return False
    floor = min(e.timestamp for e in events)
    if after is not None and floor < after:
        return True
    if recent is None:
        return False
    kept = sorted(
        (e for e in events if after is None or e.timestamp >= after),
        key=lambda e: (e.timestamp, e.id),
    )
    return len(kept) >= recent and kept[-recent].timestamp > floor


def adk_session(
    app_name: str,
    user_id: str,
    session_id: str,
    *,
    stored: Any,
    events: list[Event],
    app_state: Mapping[str, Any],
    user_state: Mapping[str, Any],
) -> Session:
    merged = dict(stored.state.get("state", {}))
    merged.update({State.APP_PREFIX + k: v for k, v in app_state.items()})
    merged.update({State.USER_PREFIX + k: v for k, v in user_state.items()})
    session = Session(
        app_name=app_name,
        user_id=user_id,
        id=session_id,
        state=merged,
        events=events,
        last_update_time=float(stored.state.get("last_update_time", 0.0)),
    )
    session._storage_update_marker = str(stored.version)
    return session
