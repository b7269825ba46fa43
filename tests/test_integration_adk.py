"""TetherSessionService against ADK's session-service contract, on every built-in store.

ADK's contract lives in google/adk-python's ``tests/unittests/sessions/test_session_service.py``
(its ``session_service`` fixture runs every backend registered in
``tests/unittests/sessions/_conformance.py``); the sdist ships no tests. Each clause below is
re-expressed from one upstream test and names it (``upstream:``). The clauses upstream runs on
one backend only (the stale writer and concurrent stale writers on its database service, tied
timestamps on its SQL services, event deduplication on its in-memory one) run here on every
store, as do those its registry records as other backends' divergences (list order,
``last_update_time`` from the event); upstream's ``*_sync`` clauses run through the async API.
Not re-expressed: upstream tests of one backend's internals (SQLAlchemy engines, rollbacks,
table preparation, SQLite URL parsing) and of the in-memory service's stripping of padded or
blank ids (tether keeps ids as given, as ADK's database service does). Clauses marked
``tether:`` are this adapter's own (writers on separate connections, arbitrary ids, the tether
session behind an ADK session, the URI scheme).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest

from .conftest import (
    require_module,
)

require_module("google.adk", "adk")

from google.adk.errors import StaleSessionError  # noqa: E402
from google.adk.errors.already_exists_error import AlreadyExistsError  # noqa: E402
from google.adk.errors.session_not_found_error import SessionNotFoundError  # noqa: E402
from google.adk.events.event import Event  # noqa: E402
from google.adk.events.event_actions import EventActions  # noqa: E402
from google.adk.sessions.base_session_service import GetSessionConfig  # noqa: E402
from google.adk.sessions.session import Session  # noqa: E402
from google.adk.tools.tool_confirmation import ToolConfirmation  # noqa: E402
from google.genai import types  # noqa: E402

import tether  # noqa: E402
from tether.ids import encode_external_id  # noqa: E402
from tether.integrations.adk import (  # noqa: E402
    AGENT,
    TetherSessionService,
    register,
    session_tid,
)
from tether.stores.base import AsyncStore  # noqa: E402

STORES = ["memory", "file", "sqlite", "redis", "postgres"]


@pytest.fixture
async def tstore(store_url: str) -> AsyncIterator[AsyncStore]:
    async with tether.open_async_store(store_url) as opened:
        yield opened


@pytest.fixture
def svc(tstore: AsyncStore) -> TetherSessionService:
    return TetherSessionService(tstore)


pytestmark = pytest.mark.parametrize("store_url", STORES, indirect=True)


def _event(inv: str = "inv", **kw: Any) -> Event:
    return Event(invocation_id=inv, author="user", **kw)


# --- upstream clauses ----------------------------------------------------------------------


async def test_get_empty_session(svc):
    """upstream: test_get_empty_session"""
    assert await svc.get_session(app_name="my_app", user_id="test_user", session_id="123") is None


async def test_create_get_session(svc):
    """upstream: test_create_get_session"""
    session = await svc.create_session(app_name="my_app", user_id="u", state={"key": "value"})
    assert session.id
    assert session.state == {"key": "value"}
    assert session.last_update_time <= datetime.now(timezone.utc).timestamp()
    got = await svc.get_session(app_name="my_app", user_id="u", session_id=session.id)
    assert got == session
    await svc.delete_session(app_name="my_app", user_id="u", session_id=session.id)
    assert await svc.get_session(app_name="my_app", user_id="u", session_id=session.id) is None


async def test_create_and_list_sessions(svc):
    """upstream: test_create_and_list_sessions"""
    ids = [f"session{i}" for i in range(5)]
    for sid in ids:
        await svc.create_session(
            app_name="my_app", user_id="u", session_id=sid, state={"key": "value" + sid}
        )
    sessions = (await svc.list_sessions(app_name="my_app", user_id="u")).sessions
    assert {s.id for s in sessions} == set(ids)
    for s in sessions:
        assert s.state == {"key": "value" + s.id}
        assert s.events == []


async def test_list_sessions_all_users(svc):
    """upstream: test_list_sessions_all_users"""
    await svc.create_session(app_name="a", user_id="user1", session_id="1a", state={"k": "1a"})
    await svc.create_session(app_name="a", user_id="user1", session_id="1b", state={"k": "1b"})
    await svc.create_session(app_name="a", user_id="user2", session_id="2a", state={"k": "2a"})
    await svc.create_session(app_name="other", user_id="user1", session_id="x")
    one = (await svc.list_sessions(app_name="a", user_id="user1")).sessions
    assert {s.id: s.state for s in one} == {"1a": {"k": "1a"}, "1b": {"k": "1b"}}
    two = (await svc.list_sessions(app_name="a", user_id="user2")).sessions
    assert [(s.id, s.user_id) for s in two] == [("2a", "user2")]
    every = (await svc.list_sessions(app_name="a", user_id=None)).sessions
    assert {(s.user_id, s.id) for s in every} == {("user1", "1a"), ("user1", "1b"), ("user2", "2a")}


async def test_list_sessions_ordered_by_last_update_time(svc):
    """upstream: test_list_sessions_ordered_by_last_update_time (a recorded divergence of
    ADK's Redis service): oldest ``last_update_time`` first."""
    for sid in ("a", "b", "c"):
        await svc.create_session(app_name="my_app", user_id="u", session_id=sid)
    session_a = await svc.get_session(app_name="my_app", user_id="u", session_id="a")
    await asyncio.sleep(0.01)
    await svc.append_event(session_a, _event())
    order = [s.id for s in (await svc.list_sessions(app_name="my_app", user_id="u")).sessions]
    assert order == ["b", "c", "a"]


async def test_app_state_is_shared_by_all_users_of_app(svc):
    """upstream: test_app_state_is_shared_by_all_users_of_app"""
    s1 = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"app:k1": "v1"}
    )
    await svc.append_event(s1, _event(actions=EventActions(state_delta={"app:k2": "v2"})))
    s2 = await svc.create_session(app_name="a", user_id="u2", session_id="s2")
    assert s2.state == {"app:k1": "v1", "app:k2": "v2"}
    got = await svc.get_session(app_name="a", user_id="u1", session_id="s1")
    assert got.state["app:k1"] == "v1"
    assert got.state["app:k2"] == "v2"


async def test_user_state_is_shared_only_by_user_sessions(svc):
    """upstream: test_user_state_is_shared_only_by_user_sessions (and get_user_state, upstream
    test_get_user_state.py: raw keys, ``{}`` for none)"""
    s1 = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"user:k1": "v1"}
    )
    await svc.append_event(s1, _event(actions=EventActions(state_delta={"user:k2": "v2"})))
    s1b = await svc.create_session(app_name="a", user_id="u1", session_id="s1b")
    assert s1b.state == {"user:k1": "v1", "user:k2": "v2"}
    s2 = await svc.create_session(app_name="a", user_id="u2", session_id="s2")
    assert s2.state == {}
    assert await svc.get_user_state(app_name="a", user_id="u1") == {"k1": "v1", "k2": "v2"}
    assert await svc.get_user_state(app_name="a", user_id="u2") == {}


async def test_session_state_is_not_shared(svc):
    """upstream: test_session_state_is_not_shared"""
    s1 = await svc.create_session(app_name="a", user_id="u1", session_id="s1", state={"sk1": 1})
    await svc.append_event(s1, _event(actions=EventActions(state_delta={"sk2": 2})))
    got = await svc.get_session(app_name="a", user_id="u1", session_id="s1")
    assert got.state == {"sk1": 1, "sk2": 2}
    s1b = await svc.create_session(app_name="a", user_id="u1", session_id="s1b")
    assert s1b.state == {}


async def test_temp_state_is_not_persisted_in_state_or_events(svc, tstore):
    """upstream: test_temp_state_is_not_persisted_in_state_or_events; also checked in the
    stored tether session itself, not only through the service."""
    session = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"temp:c": 0}
    )
    event = _event(actions=EventActions(state_delta={"temp:k1": "v1", "sk": "v2"}))
    await svc.append_event(session, event)
    assert session.state["temp:k1"] == "v1"  # visible for the rest of the invocation
    got = await svc.get_session(app_name="a", user_id="u1", session_id="s1")
    assert got.state == {"sk": "v2"}
    assert "temp:k1" not in got.events[0].actions.state_delta
    raw = await tstore.load(session_tid("a", "u1", "s1"))
    assert "temp:" not in raw.model_dump_json()


async def test_get_session_respects_user_id(svc):
    """upstream: test_get_session_respects_user_id"""
    s1 = await svc.create_session(app_name="a", user_id="u1", session_id="s1")
    await svc.append_event(s1, _event())
    await svc.create_session(app_name="a", user_id="u2", session_id="s1")
    got = await svc.get_session(app_name="a", user_id="u2", session_id="s1")
    assert got.user_id == "u2"
    assert got.events == []


async def test_create_session_with_existing_id_raises_error(svc):
    """upstream: test_create_session_with_existing_id_raises_error"""
    await svc.create_session(app_name="a", user_id="u", session_id="existing")
    with pytest.raises(AlreadyExistsError):
        await svc.create_session(app_name="a", user_id="u", session_id="existing")


async def test_append_event_bytes(svc):
    """upstream: test_append_event_bytes"""
    session = await svc.create_session(app_name="a", user_id="u")
    content = types.Content(
        role="user", parts=[types.Part.from_bytes(data=b"\x00img\xff", mime_type="image/png")]
    )
    grounding = types.GroundingMetadata(search_entry_point=types.SearchEntryPoint(sdk_blob=b"blob"))
    await svc.append_event(session, _event(content=content, grounding_metadata=grounding))
    assert session.events[0].content == content
    got = await svc.get_session(app_name="a", user_id="u", session_id=session.id)
    assert len(got.events) == 1
    assert got.events[0].content == content
    assert got.events[0].grounding_metadata == grounding


async def test_append_event_complete(svc):
    """upstream: test_append_event_complete"""
    session = await svc.create_session(app_name="a", user_id="u")
    event = Event(
        invocation_id="invocation",
        author="user",
        content=types.Content(role="user", parts=[types.Part(text="test_text")]),
        turn_complete=True,
        partial=False,
        actions=EventActions(artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True),
        long_running_tool_ids={"tool1"},
        error_code="error_code",
        error_message="error_message",
        interrupted=True,
        grounding_metadata=types.GroundingMetadata(web_search_queries=["query1"]),
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=1, candidates_token_count=1, total_token_count=2
        ),
        citation_metadata=types.CitationMetadata(),
        custom_metadata={"custom_key": "custom_value"},
        input_transcription=types.Transcription(text="in", finished=True),
        output_transcription=types.Transcription(text="out", finished=True),
    )
    await svc.append_event(session, event)
    assert await svc.get_session(app_name="a", user_id="u", session_id=session.id) == session


async def test_session_last_update_time_updates_on_event(svc):
    """upstream: test_session_last_update_time_updates_on_event (a recorded divergence of ADK's
    Redis service): the session takes the event's timestamp, in memory and stored."""
    session = await svc.create_session(app_name="a", user_id="u")
    original = session.last_update_time
    await svc.append_event(session, _event(timestamp=original + 10))
    assert session.last_update_time == pytest.approx(original + 10, abs=1e-6)
    got = await svc.get_session(app_name="a", user_id="u", session_id=session.id)
    assert got.last_update_time == pytest.approx(original + 10, abs=1e-6)


async def test_append_event_to_stale_session(svc):
    """upstream: test_append_event_to_stale_session (pinned upstream to the database backend):
    the stale append raises StaleSessionError ("modified in storage") and changes nothing."""
    now = time.time()
    original = await svc.create_session(app_name="a", user_id="u")
    await svc.append_event(original, _event("inv1", timestamp=now + 1, actions=_delta(sk1="v1")))
    updated = await svc.get_session(app_name="a", user_id="u", session_id=original.id)
    await svc.append_event(updated, _event("inv2", timestamp=now + 2, actions=_delta(sk2="v2")))
    assert len(original.events) == 1
    with pytest.raises(StaleSessionError, match="modified in storage"):
        await svc.append_event(
            original, _event("inv3", timestamp=now + 3, actions=_delta(sk3="v3", **{"temp:t": 1}))
        )
    final = await svc.get_session(app_name="a", user_id="u", session_id=original.id)
    assert [e.invocation_id for e in final.events] == ["inv1", "inv2"]
    assert final.state == {"sk1": "v1", "sk2": "v2"}
    # the refused event is not in the caller's session either, nor its state, temp: included
    assert len(original.events) == 1
    assert original.state == {"sk1": "v1"}
    # a fresh read can write again
    await svc.append_event(final, _event("inv3", timestamp=now + 3, actions=_delta(sk3="v3")))


async def test_get_session_with_config(svc):
    """upstream: test_get_session_with_config (after_timestamp inclusive)"""
    session = await svc.create_session(app_name="a", user_id="u")
    for i in range(1, 6):
        await svc.append_event(session, Event(author="user", timestamp=i))

    async def get(**kw: Any) -> list[float]:
        config = GetSessionConfig(**kw) if kw else None
        got = await svc.get_session(app_name="a", user_id="u", session_id=session.id, config=config)
        return [e.timestamp for e in got.events]

    assert await get() == [1, 2, 3, 4, 5]
    assert await get(num_recent_events=3) == [3, 4, 5]
    assert await get(num_recent_events=0) == []
    assert await get(after_timestamp=4.0) == [4, 5]
    assert await get(after_timestamp=50.0) == []
    assert await get(after_timestamp=4.0, num_recent_events=3) == [4, 5]


async def test_partial_events_are_not_persisted(svc):
    """upstream: test_partial_events_are_not_persisted"""
    session = await svc.create_session(app_name="a", user_id="u")
    await svc.append_event(session, Event(author="user", partial=True))
    assert session.events == []
    got = await svc.get_session(app_name="a", user_id="u", session_id=session.id)
    assert got.events == []


async def _reload(svc: TetherSessionService, session: Session) -> Session:
    got = await svc.get_session(
        app_name=session.app_name, user_id=session.user_id, session_id=session.id
    )
    assert got is not None
    return got


async def test_dict_valued_state_delta_replaces_stored_value(svc):
    """upstream: test_dict_valued_state_delta_replaces_stored_value"""
    session = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"profile": {"name": "ada", "r": 1}}
    )
    await svc.append_event(session, _event(actions=_delta(profile={"name": "bob"})))
    assert (await _reload(svc, session)).state["profile"] == {"name": "bob"}
    assert session.state["profile"] == {"name": "bob"}


async def test_none_valued_state_delta_is_stored_not_dropped(svc):
    """upstream: test_none_valued_state_delta_is_stored_not_dropped"""
    session = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"flag": True}
    )
    await svc.append_event(session, _event(actions=_delta(flag=None)))
    reloaded = await _reload(svc, session)
    assert "flag" in reloaded.state
    assert reloaded.state["flag"] is None
    assert "flag" in session.state


async def test_boolean_state_survives_unrelated_state_delta(svc):
    """upstream: test_boolean_state_survives_unrelated_state_delta"""
    session = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"flag": False}
    )
    await svc.append_event(session, _event(actions=_delta(new_flag=True)))
    reloaded = await _reload(svc, session)
    assert reloaded.state["new_flag"] is True
    assert reloaded.state["flag"] is False


async def test_app_state_dict_valued_delta_replaces_stored_value(svc):
    """upstream: test_app_state_dict_valued_delta_replaces_stored_value"""
    s1 = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"app:cfg": {"name": "ada", "r": 1}}
    )
    await svc.append_event(s1, _event(actions=_delta(**{"app:cfg": {"name": "bob"}})))
    s2 = await svc.create_session(app_name="a", user_id="u2", session_id="s2")
    assert s2.state["app:cfg"] == {"name": "bob"}
    assert s1.state["app:cfg"] == {"name": "bob"}


async def test_user_state_none_valued_delta_is_stored_not_dropped(svc):
    """upstream: test_user_state_none_valued_delta_is_stored_not_dropped"""
    s1 = await svc.create_session(
        app_name="a", user_id="u1", session_id="s1", state={"user:pref": "dark"}
    )
    await svc.append_event(s1, _event(actions=_delta(**{"user:pref": None})))
    s1b = await svc.create_session(app_name="a", user_id="u1", session_id="s1b")
    assert "user:pref" in s1b.state
    assert s1b.state["user:pref"] is None
    assert s1.state["user:pref"] is None


async def test_temp_state_visible_across_sequential_events(svc):
    """upstream: test_temp_state_visible_across_sequential_events"""
    session = await svc.create_session(app_name="a", user_id="u1", session_id="s_seq")
    event1 = Event(invocation_id="inv1", author="agent1", actions=_delta(**{"temp:out": "r1"}))
    await svc.append_event(session, event1)
    assert session.state["temp:out"] == "r1"
    assert "temp:out" not in event1.actions.state_delta


async def test_create_session_concurrent_same_id_raises_already_exists_error(svc, store_url):
    """upstream: test_create_session_concurrent_same_id_raises_already_exists_error (pinned
    upstream to its database backend), here through two services with their own connections."""
    other = svc if store_url == "memory://" else TetherSessionService(uri="tether:" + store_url)
    try:
        await svc.create_session(app_name="a", user_id="u", session_id="warmup")
        for i in range(5):
            sid = f"race-session-{i}"
            results = await asyncio.gather(
                svc.create_session(app_name="a", user_id="u", session_id=sid),
                other.create_session(app_name="a", user_id="u", session_id=sid),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            won = [r for r in results if isinstance(r, Session)]
            assert (len(errors), len(won)) == (1, 1), results
            assert isinstance(errors[0], AlreadyExistsError)
            assert sid in str(errors[0])
            assert (await _reload(svc, won[0])).id == sid
    finally:
        if other is not svc:
            await other.close()


async def test_append_event_with_requested_tool_confirmations(svc):
    """upstream: test_append_event_with_requested_tool_confirmations"""
    session = await svc.create_session(app_name="a", user_id="u")
    confirmation = ToolConfirmation(
        hint="dynamic hint", confirmed=False, payload={"collection_name": "photos"}
    )
    actions = EventActions(requested_tool_confirmations={"tool_call_1": confirmation})
    await svc.append_event(session, _event(actions=actions))
    [event] = (await _reload(svc, session)).events
    got = event.actions.requested_tool_confirmations["tool_call_1"]
    assert (got.hint, got.payload, got.confirmed) == (
        "dynamic hint",
        {"collection_name": "photos"},
        False,
    )


async def test_append_event_with_non_serializable_state_delta(svc):
    """upstream: test_append_event_with_non_serializable_state_delta (pinned upstream to its
    SQL backends): a value JSON cannot hold is stored as its text, the event is not lost."""
    session = await svc.create_session(app_name="a", user_id="u")
    await svc.append_event(session, _event(actions=_delta(callback=lambda: 1, ok=2)))
    reloaded = await _reload(svc, session)
    assert len(reloaded.events) == 1
    assert reloaded.state["ok"] == 2
    assert isinstance(reloaded.state["callback"], str)


async def test_append_event_to_deleted_session_raises_session_not_found(svc):
    """upstream: test_append_event_to_deleted_session_raises_session_not_found"""
    session = await svc.create_session(app_name="a", user_id="u")
    await svc.delete_session(app_name="a", user_id="u", session_id=session.id)
    with pytest.raises(SessionNotFoundError):
        await svc.append_event(session, _event())


async def test_append_event_to_unknown_session_raises_session_not_found(svc):
    """upstream: test_append_event_to_unknown_session_raises_session_not_found"""
    session = Session(app_name="a", user_id="u", id="never_created")
    with pytest.raises(SessionNotFoundError):
        await svc.append_event(session, _event())


async def test_sqlite_append_event_uses_typed_stale_session_error(svc):
    """upstream: test_sqlite_append_event_uses_typed_stale_session_error: a deep copy taken
    before another append is stale, and the error is also a ValueError."""
    session = await svc.create_session(app_name="a", user_id="u")
    stale = session.model_copy(deep=True)
    await svc.append_event(session, _event("winner", timestamp=session.last_update_time + 1))
    with pytest.raises(StaleSessionError) as error:
        await svc.append_event(stale, _event("stale", timestamp=session.last_update_time + 1))
    assert isinstance(error.value, ValueError)


async def test_append_event_concurrent_stale_sessions_reject_stale_writer(svc):
    """upstream: test_append_event_concurrent_stale_sessions_reject_stale_writer (pinned
    upstream to its database backend; ADK's in-memory and SQLite services accept both)"""
    session = await svc.create_session(app_name="a", user_id="u")
    for i in range(8):
        latest = await _reload(svc, session)
        first, second = latest.model_copy(deep=True), latest.model_copy(deep=True)
        base = latest.last_update_time + 10.0
        results = await asyncio.gather(
            svc.append_event(
                first, _event(f"inv{i}-1", timestamp=base + 1, actions=_delta(**{f"sk{i}-1": 1}))
            ),
            svc.append_event(
                second, _event(f"inv{i}-2", timestamp=base + 2, actions=_delta(**{f"sk{i}-2": 2}))
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], StaleSessionError)
        assert "modified in storage" in str(errors[0])
    final = await _reload(svc, session)
    for i in range(8):
        values = {final.state.get(f"sk{i}-1"), final.state.get(f"sk{i}-2")}
        assert None in values
        assert values & {1, 2}
    assert len(final.events) == 8


async def test_append_event_allows_timestamp_drift_for_current_session(svc):
    """upstream: test_append_event_allows_timestamp_drift_for_current_session"""
    session = await svc.create_session(app_name="a", user_id="u", session_id="s1")
    event1 = _event("inv1", timestamp=session.last_update_time + 10)
    await svc.append_event(session, event1)
    session.last_update_time -= 0.0001
    await svc.append_event(session, _event("inv2", timestamp=event1.timestamp + 10))
    assert [e.invocation_id for e in (await _reload(svc, session)).events] == ["inv1", "inv2"]


async def test_append_event_allows_markerless_current_session(svc):
    """upstream: test_append_event_allows_markerless_current_session; and tether's converse: a
    marker-less session that has not seen the stored events is refused."""
    session = await svc.create_session(app_name="a", user_id="u", session_id="s1")
    stale = session.model_copy(deep=True)
    stale._storage_update_marker = None
    event1 = _event("inv1", timestamp=session.last_update_time + 10)
    await svc.append_event(session, event1)
    session._storage_update_marker = None
    session.last_update_time -= 0.0001
    await svc.append_event(session, _event("inv2", timestamp=event1.timestamp + 10))
    assert [e.invocation_id for e in (await _reload(svc, session)).events] == ["inv1", "inv2"]
    with pytest.raises(StaleSessionError):
        await svc.append_event(stale, _event("inv3", timestamp=event1.timestamp + 20))


async def test_get_user_state_returns_empty_dict_when_no_state_exists(svc):
    """upstream: test_get_user_state_returns_empty_dict_when_no_state_exists"""
    assert await svc.get_user_state(app_name="my_app", user_id="u1") == {}


async def test_get_user_state_returns_state_written_via_append_event(svc):
    """upstream: test_get_user_state_returns_state_written_via_append_event"""
    session = await svc.create_session(app_name="my_app", user_id="u1")
    delta = _delta(**{"user:profile": {"name": "Alice"}, "session_key": 1})
    await svc.append_event(session, Event(author="system", actions=delta))
    assert await svc.get_user_state(app_name="my_app", user_id="u1") == {
        "profile": {"name": "Alice"}
    }


async def test_get_user_state_is_not_visible_across_users(svc):
    """upstream: test_get_user_state_is_not_visible_across_users"""
    session = await svc.create_session(app_name="my_app", user_id="u1")
    await svc.append_event(session, Event(author="system", actions=_delta(**{"user:s": 1})))
    assert await svc.get_user_state(app_name="my_app", user_id="u2") == {}


async def test_get_user_state_is_not_visible_across_apps(svc):
    """upstream: test_get_user_state_is_not_visible_across_apps"""
    session = await svc.create_session(app_name="my_app", user_id="u1")
    await svc.append_event(session, Event(author="system", actions=_delta(**{"user:d": 1})))
    assert await svc.get_user_state(app_name="other_app", user_id="u1") == {}


async def test_get_user_state_available_before_session_is_created(svc):
    """upstream: test_get_user_state_available_before_session_is_created"""
    first = await svc.create_session(app_name="my_app", user_id="u1")
    await svc.append_event(first, Event(author="system", actions=_delta(**{"user:ctx": {"v": 1}})))
    assert await svc.get_user_state(app_name="my_app", user_id="u1") == {"ctx": {"v": 1}}


async def test_get_user_state_reflects_latest_write(svc):
    """upstream: test_get_user_state_reflects_latest_write"""
    session = await svc.create_session(app_name="my_app", user_id="u1")
    for n in (1, 2):
        await svc.append_event(session, Event(author="system", actions=_delta(**{"user:c": n})))
    assert (await svc.get_user_state(app_name="my_app", user_id="u1"))["c"] == 2


async def test_get_session_keeps_exact_epoch_across_a_repeated_local_hour(svc, monkeypatch):
    """upstream: test_get_session_keeps_exact_epoch_across_a_repeated_local_hour"""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        epochs = [1730613600.0, 1730615400.0]
        session = await svc.create_session(app_name="a", user_id="u")
        for epoch in epochs:
            await svc.append_event(session, Event(author="user", timestamp=epoch))
        assert [e.timestamp for e in (await _reload(svc, session)).events] == epochs
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_delete_session_removes_only_the_targeted_users_session(svc):
    """upstream: test_delete_session_sync_removes_only_the_targeted_users_session (through the
    async API)"""
    await svc.create_session(app_name="a", user_id="u1", session_id="s1")
    await svc.create_session(app_name="a", user_id="u2", session_id="s1")
    await svc.delete_session(app_name="a", user_id="u1", session_id="s1")
    assert await svc.get_session(app_name="a", user_id="u1", session_id="s1") is None
    assert await svc.get_session(app_name="a", user_id="u2", session_id="s1") is not None


async def test_delete_session_unknown_session_is_a_noop(svc):
    """upstream: test_delete_session_sync_unknown_session_is_a_noop (through the async API)"""
    await svc.create_session(app_name="a", user_id="u1", session_id="s1")
    await svc.delete_session(app_name="a", user_id="u1", session_id="unknown")
    await svc.delete_session(app_name="a", user_id="unknown", session_id="s1")
    await svc.delete_session(app_name="unknown", user_id="u1", session_id="s1")
    assert await svc.get_session(app_name="a", user_id="u1", session_id="s1") is not None


async def test_list_sessions_strips_events_and_merges_scoped_state(svc):
    """upstream: test_list_sessions_sync_strips_events_and_merges_scoped_state (through the
    async API)"""
    state = {"app:a": "av", "user:u": "uv", "sk": "sv", "temp:t": "tv"}
    session = await svc.create_session(app_name="a", user_id="u1", session_id="s1", state=state)
    await svc.append_event(session, _event(actions=_delta(sk2="sv2")))
    [listed] = (await svc.list_sessions(app_name="a", user_id="u1")).sessions
    assert listed.id == "s1"
    assert listed.events == []
    assert listed.state == {"app:a": "av", "user:u": "uv", "sk": "sv", "sk2": "sv2"}
    # tether: listing every user merges each one's own user: state (one listing of the scopes)
    await svc.create_session(app_name="a", user_id="u2", session_id="s2", state={"user:u": "u2v"})
    await svc.create_session(app_name="a", user_id="u3", session_id="s3")
    every = {s.user_id: s.state for s in (await svc.list_sessions(app_name="a")).sessions}
    assert every["u1"] == listed.state
    assert every["u2"] == {"app:a": "av", "user:u": "u2v"}
    assert every["u3"] == {"app:a": "av"}


async def test_list_sessions_unknown_app_or_user_returns_empty_response(svc):
    """upstream: test_list_sessions_sync_unknown_app_or_user_returns_empty_response (through
    the async API)"""
    await svc.create_session(app_name="a", user_id="u1", session_id="s1")
    assert (await svc.list_sessions(app_name="unknown")).sessions == []
    assert (await svc.list_sessions(app_name="a", user_id="unknown")).sessions == []
    assert [s.id for s in (await svc.list_sessions(app_name="a")).sessions] == ["s1"]


async def test_append_event_is_idempotent_for_same_event_id(svc):
    """upstream: test_append_event_is_idempotent_for_same_event_id (pinned upstream to its
    in-memory backend): the same event, or an equal copy, is stored once"""
    session = await svc.create_session(app_name="a", user_id="u", session_id="dup")
    event = _event("inv_dup", actions=_delta(counter=1))
    await svc.append_event(session, event)
    await svc.append_event(session, event)
    await svc.append_event(session, event.model_copy(deep=True))
    reloaded = await _reload(svc, session)
    assert [e.id for e in reloaded.events] == [event.id]
    assert reloaded.state["counter"] == 1


async def test_append_different_events_not_deduplicated(svc):
    """upstream: test_append_different_events_not_deduplicated"""
    session = await svc.create_session(app_name="a", user_id="u", session_id="multi")
    await svc.append_event(session, Event(id="shared", invocation_id="inv_a", author="user"))
    await svc.append_event(session, Event(id="shared", invocation_id="inv_b", author="agent"))
    assert [e.author for e in (await _reload(svc, session)).events] == ["user", "agent"]
    # tether: each one's user: change is applied too (an outbox is not known by its event id)
    for n in (1, 2):
        shared = Event(id="shared", invocation_id=f"inv_{n}", author="user")
        await svc.append_event(
            session, shared.model_copy(update={"actions": _delta(**{"user:n": n})})
        )
        assert await svc.get_user_state(app_name="a", user_id="u") == {"n": n}


# --- tether's own clauses ----------------------------------------------------------------


async def test_concurrent_stale_writers_exactly_one_wins(svc, store_url):
    """tether: two writers holding the same revision append at once, each through its own
    service and store connection; exactly one wins, the other gets StaleSessionError, and the
    stored session holds only the winner's event. (ADK's in-memory and SQLite services accept
    both.)"""
    await svc.create_session(app_name="a", user_id="u", session_id="s")
    for round_ in range(5):
        # its own connection to the same store (the memory store lives in one object)
        other = svc if store_url == "memory://" else TetherSessionService(uri="tether:" + store_url)
        first = await svc.get_session(app_name="a", user_id="u", session_id="s")
        second = await other.get_session(app_name="a", user_id="u", session_id="s")
        assert first is not None
        assert second is not None
        results = await asyncio.gather(
            svc.append_event(first, _event(f"a{round_}", actions=_delta(who="a"))),
            other.append_event(second, _event(f"b{round_}", actions=_delta(who="b"))),
            return_exceptions=True,
        )
        if other is not svc:
            await other.close()
        stale = [r for r in results if isinstance(r, StaleSessionError)]
        won = [r for r in results if isinstance(r, Event)]
        assert (len(stale), len(won)) == (1, 1), results
        got = await svc.get_session(app_name="a", user_id="u", session_id="s")
        assert got.events[-1].invocation_id == won[0].invocation_id
        assert len(got.events) == round_ + 1
        assert got.state["who"] == won[0].invocation_id[0]


async def test_scope_write_refused_after_the_commit_is_completed_later(svc, tstore, caplog):
    """tether: the event is committed but its user: scope cannot be written (an operator holds
    the scope session's lease): append_event still succeeds (the write is durable; raising
    would make the caller retry a stale session), logs a warning, and the next read after the
    lease is released completes the outbox."""
    session = await svc.create_session(
        app_name="a", user_id="u", session_id="s", state={"user:seed": 0}
    )
    user_scope = encode_external_id("u/a/u")  # the user scope's session, as documented
    lease = await tstore.claim(user_scope, "ops", 30)
    with caplog.at_level(logging.WARNING, logger="tether.integrations.adk"):
        await svc.append_event(session, _event(actions=_delta(**{"user:k": 1, "app:z": 2})))
    assert "not applied yet" in caplog.text
    assert session.state == {"user:seed": 0, "user:k": 1, "app:z": 2}
    assert await svc.get_user_state(app_name="a", user_id="u") == {"seed": 0}
    await tstore.release(lease)
    got = await _reload(svc, session)
    assert got.state == session.state
    assert await svc.get_user_state(app_name="a", user_id="u") == {"seed": 0, "k": 1}
    await svc.append_event(session, _event())  # its revision is the stored one


async def test_concurrent_writers_to_one_scope_lose_nothing(svc, store_url):
    """tether: eight sessions of one user write user: and app: keys at once, through two
    services with their own connections; every key lands (each scope write is compared and
    retried, never a blind overwrite of another session's change)."""
    other = svc if store_url == "memory://" else TetherSessionService(uri="tether:" + store_url)
    try:
        sessions = [
            await svc.create_session(app_name="a", user_id="u", session_id=f"s{i}")
            for i in range(8)
        ]
        await asyncio.gather(
            *(
                (svc if i % 2 else other).append_event(
                    session, _event(actions=_delta(**{f"user:k{i}": i, f"app:k{i}": i}))
                )
                for i, session in enumerate(sessions)
            )
        )
    finally:
        if other is not svc:
            await other.close()
    expected = {f"k{i}": i for i in range(8)}
    assert await svc.get_user_state(app_name="a", user_id="u") == expected
    fresh = await svc.create_session(app_name="a", user_id="v")
    assert fresh.state == {f"app:k{i}": i for i in range(8)}


@pytest.mark.parametrize("reverse", [False, True])
async def test_get_session_orders_tied_timestamps_by_id(svc, reverse):
    """upstream: test_get_session_orders_tied_timestamps_by_id (pinned upstream to its database
    and SQLite backends): events with one timestamp come back ordered by id, whatever the
    append order; tether's own addition: windows cut inside the tie the same way."""
    session = await svc.create_session(app_name="a", user_id="u")
    ids = ["e-c", "e-a", "e-b"] if not reverse else ["e-b", "e-a", "e-c"]
    for eid in ids:
        await svc.append_event(session, Event(id=eid, author="user", timestamp=7.0))
    await svc.append_event(session, Event(id="e-0", author="user", timestamp=3.0))
    got = await svc.get_session(app_name="a", user_id="u", session_id=session.id)
    assert [e.id for e in got.events] == ["e-0", "e-a", "e-b", "e-c"]
    windowed = await svc.get_session(
        app_name="a",
        user_id="u",
        session_id=session.id,
        config=GetSessionConfig(after_timestamp=7.0, num_recent_events=2),
    )
    assert [e.id for e in windowed.events] == ["e-b", "e-c"]


@pytest.mark.parametrize(
    ("app", "user", "sid"),
    [
        ("my app", "ada@example.com", "a/b/c"),
        ("a/b", "c", "d"),
        ("a", "b/c", "d"),
        ("ünï cødé", " padded ", "100%/x"),
        ("x" * 150, "y" * 150, "z" * 200),
    ],
)
async def test_arbitrary_ids_round_trip(svc, app, user, sid):
    """tether: any app, user and session id (emails, spaces, slashes, long) round-trips, and
    ids that differ only in where a '/' falls never share a session."""
    await svc.create_session(app_name=app, user_id=user, session_id=sid, state={"user:k": 1})
    await svc.create_session(app_name="a", user_id="b", session_id="c/d")
    got = await svc.get_session(app_name=app, user_id=user, session_id=sid)
    assert (got.app_name, got.user_id, got.id) == (app, user, sid)
    listed = (await svc.list_sessions(app_name=app, user_id=user)).sessions
    assert [(s.app_name, s.user_id, s.id) for s in listed] == [(app, user, sid)]
    assert await svc.get_user_state(app_name=app, user_id=user) == {"k": 1}
    await svc.delete_session(app_name=app, user_id=user, session_id=sid)
    assert await svc.get_session(app_name=app, user_id=user, session_id=sid) is None
    assert await svc.get_session(app_name="a", user_id="b", session_id="c/d") is not None


async def test_sessions_are_tether_sessions(svc, tstore):
    """tether: an ADK session is an ordinary tether session (agent AGENT, events as items),
    so ``tether ls`` / ``show`` see it."""
    session = await svc.create_session(app_name="a", user_id="u", session_id="s")
    await svc.append_event(session, _event(content=types.Content(parts=[types.Part(text="hi")])))
    stored = await tstore.load(session_tid("a", "u", "s"))
    assert stored.agent == AGENT
    assert stored.metadata == {"adk_app": "a", "adk_user": "u", "adk_session": "s"}
    assert [item.item["type"] for item in stored.items] == ["adk.event"]
    assert session._storage_update_marker == str(stored.version)


async def test_registry_scheme(store_url, tmp_path):
    """tether: ``register`` adds the ``tether`` scheme to ADK's service registry, so
    ``--session_service_uri=tether:<store url>`` builds this service."""
    from google.adk.cli.service_registry import ServiceRegistry

    registry = ServiceRegistry()
    register(registry)
    service = registry.create_session_service("tether:" + store_url, agents_dir=str(tmp_path))
    assert isinstance(service, TetherSessionService)
    try:
        created = await service.create_session(app_name="a", user_id="u", session_id="s")
        assert created.id == "s"
    finally:
        await service.close()
    with pytest.raises(ValueError, match="tether:<store url>"):
        TetherSessionService(uri="sqlite:///x.db")


async def test_sync_store(store_url):
    """tether: a sync tether store works too (its calls run in a worker thread)."""
    with tether.open_store(store_url) as sync_store:
        svc = TetherSessionService(sync_store)
        session = await svc.create_session(
            app_name="a", user_id="u", session_id="s", state={"user:k": 1}
        )
        await svc.append_event(session, _event(actions=_delta(x=1)))
        assert await _reload(svc, session) == session
        assert session.state == {"user:k": 1, "x": 1}


def _delta(**values: Any) -> EventActions:
    return EventActions(state_delta=values)
