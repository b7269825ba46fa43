"""How ADK apps, users, sessions and events live in tether sessions (no I/O): the tether
ids (each part escaped, so any text round-trips), the metadata of the ``app:`` and ``user:``
scope sessions, an event's outbox, an event as a stored item and back, and the ADK
``Session`` built from what was read. :mod:`tether.integrations.adk` does the I/O."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Mapping, Sequence
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


def delivered_before(events: Sequence[Any], event: Any) -> bool:
    """Whether ``event`` (this object, or an equal one with its id) is already in ``events``.
    The ids are compared first, in C (``in`` over ``map``): a Python loop over every event
    of a long session cost milliseconds an append (about 0.5 µs an event); only an event that
    shares the id is compared whole."""
    if event.id not in map(_EVENT_ID, events):
        return False
    return any(seen is event or (seen.id == event.id and seen == event) for seen in events)


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
