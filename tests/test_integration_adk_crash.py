"""TetherSessionService across processes, on every store another process can reach: a writer
killed between its writes, and two writers from one revision.

An event that changes session, ``app:`` and ``user:`` state is one tether commit of the event
and its outbox, then one write per shared scope. A child process is killed (``os._exit``, no
cleanup) before the first scope write, or between the ``app:`` and the ``user:`` write; the
next reader of the session in another process completes the outbox, so all three scopes hold
the event's changes, once: a later change to the same key by another session is not undone
when the outbox is read again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest

from .conftest import (
    require_module,
)

require_module("google.adk", "adk")

from google.adk.events.event import Event  # noqa: E402
from google.adk.events.event_actions import EventActions  # noqa: E402

import tether  # noqa: E402
from tether.integrations.adk import TetherSessionService, session_tid  # noqa: E402
from tether.stores.base import AsyncStore  # noqa: E402

_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    import tether
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from tether.integrations import adk

    url, die_at = sys.argv[1], int(sys.argv[2])
    writes = 0
    real_apply = adk.TetherSessionService._apply

    async def dying_apply(self, tid, origin, marker, delta, metadata, **kw):
        # count only the scope writes that change something; die before write number die_at
        global writes
        if delta:
            if writes == die_at:
                os._exit(17)
            writes += 1
        return await real_apply(self, tid, origin, marker, delta, metadata, **kw)

    adk.TetherSessionService._apply = dying_apply

    async def main():
        async with tether.open_async_store(url) as store:
            svc = adk.TetherSessionService(store)
            s = await svc.get_session(app_name="app", user_id="ada", session_id="s1")
            delta = {"app:a": 1, "user:u": 2, "k": 3, "temp:t": 4}
            actions = EventActions(state_delta=delta)
            event = Event(invocation_id="inv", author="user", actions=actions)
            await svc.append_event(s, event)

    asyncio.run(main())
    """
)


@pytest.fixture
async def tstore(store_url: str) -> AsyncIterator[AsyncStore]:
    async with tether.open_async_store(store_url) as opened:
        yield opened


CRASH_STORES = pytest.mark.parametrize(
    "store_url", ["file", "sqlite", "redis", "postgres"], indirect=True
)


@pytest.mark.slow
@CRASH_STORES
@pytest.mark.parametrize("die_at", [0, 1], ids=["before-app-write", "between-app-and-user"])
async def test_killed_between_scope_writes_completes_all_or_nothing(store_url, tstore, die_at):
    svc = TetherSessionService(tstore)
    await svc.create_session(app_name="app", user_id="ada", session_id="s1")
    await svc.create_session(app_name="app", user_id="bob", session_id="s2")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, store_url, str(die_at)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 17, child.stderr
    # the event and its outbox are stored together; the scopes are as the kill left them
    raw = await tstore.load(session_tid("app", "ada", "s1"))
    assert len(raw.items) == 1
    assert raw.state["pending"]["app"] == {"a": 1}
    assert raw.state["pending"]["user"] == {"u": 2}
    other = await svc.get_session(app_name="app", user_id="bob", session_id="s2")
    assert other is not None
    assert other.state.get("app:a") == (1 if die_at == 1 else None)
    assert await svc.get_user_state(app_name="app", user_id="ada") == {}

    # the next reader of the session completes the outbox: all three scopes, temp: nowhere
    got = await svc.get_session(app_name="app", user_id="ada", session_id="s1")
    assert got is not None
    assert got.state == {"app:a": 1, "user:u": 2, "k": 3}
    assert await svc.get_user_state(app_name="app", user_id="ada") == {"u": 2}
    assert "temp:t" not in got.events[0].actions.state_delta

    # completing is idempotent: a newer change by another session is not undone on re-read
    assert other is not None
    fresh = await svc.get_session(app_name="app", user_id="bob", session_id="s2")
    assert fresh is not None
    await svc.append_event(
        fresh,
        Event(invocation_id="b", author="user", actions=EventActions(state_delta={"app:a": 9})),
    )
    again = await svc.get_session(app_name="app", user_id="ada", session_id="s1")
    assert again is not None
    assert again.state["app:a"] == 9
    # and the session still writes: its revision is the stored one
    await svc.append_event(again, Event(invocation_id="next", author="user"))


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    import tether
    from google.adk.errors import StaleSessionError
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from tether.integrations.adk import TetherSessionService

    url, name, signals = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    async def main():
        async with tether.open_async_store(url) as store:
            svc = TetherSessionService(store)
            s = await svc.get_session(app_name="app", user_id="ada", session_id="s1")
            (signals / f"ready-{name}").touch()
            while not (signals / "go").exists():
                time.sleep(0.01)
            actions = EventActions(state_delta={"winner": name, "user:winner": name})
            try:
                await svc.append_event(s, Event(invocation_id=name, author="user", actions=actions))
            except StaleSessionError:
                print("stale")
            else:
                print("won")

    asyncio.run(main())
    """
)


@pytest.mark.slow
@CRASH_STORES
async def test_two_processes_from_one_revision_exactly_one_wins(store_url, tstore, tmp_path):
    """Two processes read the session at one revision, then append at once: exactly one event
    is stored, the other process gets StaleSessionError, and the scopes hold the winner's."""
    svc = TetherSessionService(tstore)
    await svc.create_session(app_name="app", user_id="ada", session_id="s1")
    signals = tmp_path / "signals"
    signals.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, store_url, name, str(signals)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while not all((signals / f"ready-{n}").exists() for n in ("a", "b")):
            assert asyncio.get_running_loop().time() < deadline, "writers never got ready"
            await asyncio.sleep(0.02)
        (signals / "go").touch()
        outcomes = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            outcomes.append(out.strip())
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert sorted(outcomes) == ["stale", "won"]
    winner = "ab"[outcomes.index("won")]
    got = await svc.get_session(app_name="app", user_id="ada", session_id="s1")
    assert got is not None
    assert [e.invocation_id for e in got.events] == [winner]
    assert got.state == {"winner": winner, "user:winner": winner}
