"""What ``TetherSessionService.append_event`` looks at: the ids of the events of the
``Session`` it is handed are indexed once and then a new event at a time, so an append to a
long session does not go over its earlier events (counted id reads, the same at 10 and 1,000
events), and an event delivered again is still found after the list is edited or replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .conftest import require_module

require_module("google.adk", "adk")

from google.adk.events.event import Event  # noqa: E402
from google.adk.events.event_actions import EventActions  # noqa: E402
from google.adk.sessions.session import Session  # noqa: E402

import tether  # noqa: E402
from tether.integrations import _adk_layout  # noqa: E402
from tether.integrations._adk_layout import app_tid, session_tid, user_tid  # noqa: E402
from tether.integrations.adk import TetherSessionService  # noqa: E402


@pytest.fixture
async def svc() -> AsyncIterator[TetherSessionService]:
    async with tether.open_async_store("memory://") as store:
        yield TetherSessionService(store)


@pytest.fixture
def id_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the index read an event's id (its ``_EVENT_ID`` wrapped)."""
    calls = [0]
    inner = _adk_layout._EVENT_ID

    def counted(event: Any) -> Any:
        calls[0] += 1
        return inner(event)

    monkeypatch.setattr(_adk_layout, "_EVENT_ID", counted)
    return calls


async def _filled(svc: TetherSessionService, sid: str, n: int) -> Session:
    session = await svc.create_session(app_name="a", user_id="u", session_id=sid)
    for k in range(n):
        await svc.append_event(session, Event(invocation_id=f"i{k}", author="user"))
    got = await svc.get_session(app_name="a", user_id="u", session_id=sid)
    assert got is not None
    assert len(got.events) == n
    return got


@pytest.mark.parametrize("n", [10, 1000])
async def test_append_reads_only_the_new_events_ids(svc, id_reads, n):
    session = await _filled(svc, f"s{n}", n)
    id_reads[0] = 0
    await svc.append_event(session, Event(invocation_id="first", author="user"))
    assert id_reads[0] == n  # the session read back is indexed once
    for k in range(20):
        id_reads[0] = 0
        await svc.append_event(session, Event(invocation_id=f"more{k}", author="user"))
        assert id_reads[0] == 1  # the previous append's event only, at any n
    reread = await svc.get_session(app_name="a", user_id="u", session_id=f"s{n}")
    assert reread is not None
    assert len(reread.events) == n + 21
    assert reread.events[-1].invocation_id == "more19"


async def test_event_delivered_again_is_stored_once(svc):
    session = await _filled(svc, "s", 5)
    event = Event(invocation_id="again", author="user", actions=EventActions(state_delta={"n": 1}))
    await svc.append_event(session, event)
    for _ in range(3):
        await svc.append_event(session, event)
        await svc.append_event(session, event.model_copy(deep=True))
    await svc.append_event(session, Event(invocation_id="after", author="user"))
    await svc.append_event(session, event)  # not the newest any more: still found
    got = await svc.get_session(app_name="a", user_id="u", session_id="s")
    assert got is not None
    assert [e.invocation_id for e in got.events[-2:]] == ["again", "after"]
    assert len(got.events) == 7


async def test_index_follows_a_replaced_or_edited_events_list(svc):
    session = await _filled(svc, "s", 3)
    first = Event(invocation_id="x", author="user")
    await svc.append_event(session, first)
    # a list replaced by another object: read again whole (the copy still holds ``first``)
    session.events = list(session.events)
    await svc.append_event(session, first.model_copy(deep=True))
    # the newest event replaced in place: its id is found, the one it replaced is not
    second = Event(invocation_id="y", author="user")
    await svc.append_event(session, second)
    replacement = Event(invocation_id="z", author="user")
    session.events[-1] = replacement
    await svc.append_event(session, replacement.model_copy(deep=True))
    got = await svc.get_session(app_name="a", user_id="u", session_id="s")
    assert got is not None
    assert [e.invocation_id for e in got.events[3:]] == ["x", "y"]
    # a list shortened (the events dropped are no longer known): ``second`` is stored again
    del session.events[-1]
    session._storage_update_marker = got._storage_update_marker
    await svc.append_event(session, second)
    got = await svc.get_session(app_name="a", user_id="u", session_id="s")
    assert got is not None
    assert [e.invocation_id for e in got.events[3:]] == ["x", "y", "y"]


async def test_index_entry_goes_with_its_session(svc):
    session = await _filled(svc, "s", 3)
    await svc.append_event(session, Event(invocation_id="x", author="user"))
    key = id(session)
    assert key in _adk_layout._SEEN
    del session
    assert key not in _adk_layout._SEEN


class _Calls:
    """The store calls a service makes (its ``load`` / ``commit`` wrapped in place)."""

    def __init__(self, store: Any) -> None:
        self.calls: list[tuple[str, str]] = []
        for name in ("load", "commit"):
            inner = getattr(store, name)

            def wrapped(*args: Any, _inner: Any = inner, _name: str = name, **kw: Any) -> Any:
                self.calls.append((_name, args[0]))
                return _inner(*args, **kw)

            setattr(store, name, wrapped)


async def test_append_without_scoped_state_is_one_read_and_one_commit(svc):
    session = await _filled(svc, "s", 3)
    calls = _Calls(svc.store)
    await svc.append_event(
        session, Event(invocation_id="x", author="user", actions=EventActions(state_delta={"k": 1}))
    )
    # neither scope is read: nothing to apply
    assert calls.calls == [
        ("load", session_tid("a", "u", "s")),
        ("commit", session_tid("a", "u", "s")),
    ]
    got = await svc.get_session(app_name="a", user_id="u", session_id="s")
    assert got is not None
    assert got.state == {"k": 1}


async def test_append_with_user_state_reads_only_that_scope(svc):
    session = await svc.create_session(app_name="a", user_id="u", session_id="s")
    calls = _Calls(svc.store)
    delta = {"user:n": 2, "temp:t": 3}
    await svc.append_event(
        session, Event(invocation_id="x", author="user", actions=EventActions(state_delta=delta))
    )
    tid, user = session_tid("a", "u", "s"), user_tid("a", "u")
    # the session's header and its commit, then the user scope: read (absent, so created),
    # read, merged; the app scope is not read
    assert calls.calls == [
        ("load", tid),
        ("commit", tid),
        ("load", user),
        ("load", user),
        ("commit", user),
    ]
    assert session.state["user:n"] == 2
    got = await svc.get_session(app_name="a", user_id="u", session_id="s")
    assert got is not None
    assert got.state == {"user:n": 2}
    assert await svc.get_user_state(app_name="a", user_id="u") == {"n": 2}


async def test_get_session_reads_the_scopes_alongside_the_session(svc):
    await svc.create_session(app_name="a", user_id="u", session_id="s", state={"user:n": 1})
    calls = _Calls(svc.store)
    got = await svc.get_session(app_name="a", user_id="u", session_id="s")
    assert got is not None
    assert got.state == {"user:n": 1}
    # the session and both scopes read once each; the outbox (applied at create) is not
    # applied again, and nothing is written
    assert sorted(calls.calls) == sorted(
        [("load", session_tid("a", "u", "s")), ("load", app_tid("a")), ("load", user_tid("a", "u"))]
    )


async def test_outbox_applied_over_a_scope_written_after_it_was_read(svc):
    """A scope read alongside the session and written by another writer before the outbox
    is applied to it: the compared write fails, the scope is read again, both changes stay."""
    store = svc.store
    await svc.create_session(app_name="a", user_id="u", session_id="s2", state={"user:o": 2})
    await svc.create_session(app_name="a", user_id="u", session_id="s")
    # an outbox left by a writer that stopped before applying it
    tid, user = session_tid("a", "u", "s"), user_tid("a", "u")
    header = await store.load(tid, last=0)
    pending = {"event": "left:1", "app": {}, "user": {"n": 1}}
    await store.commit(tid, header.version, changes={"state": {**header.state, "pending": pending}})
    inner = store.load
    raced = [False]

    async def load(session_id: str, **kw: Any) -> Any:
        got = await inner(session_id, **kw)
        if session_id == user and not raced[0]:
            raced[0] = True  # another writer changes the scope after this read
            fresh = await inner(user, last=0)
            state = {**fresh.state, "values": {**fresh.state["values"], "o": 3}}
            await store.commit(user, fresh.version, changes={"state": state})
        return got

    store.load = load
    got = await svc.get_session(app_name="a", user_id="u", session_id="s")
    assert raced[0]
    assert got is not None
    assert got.state == {"user:n": 1, "user:o": 3}
    assert await svc.get_user_state(app_name="a", user_id="u") == {"n": 1, "o": 3}


async def test_list_sessions_merges_the_scopes_read_alongside(svc):
    await svc.create_session(app_name="a", user_id="u1", session_id="s1", state={"app:x": 1})
    await svc.create_session(app_name="a", user_id="u2", session_id="s2", state={"user:y": 2})
    every = {s.id: s.state for s in (await svc.list_sessions(app_name="a")).sessions}
    assert every == {"s1": {"app:x": 1}, "s2": {"app:x": 1, "user:y": 2}}
    [one] = (await svc.list_sessions(app_name="a", user_id="u2")).sessions
    assert one.state == {"app:x": 1, "user:y": 2}
