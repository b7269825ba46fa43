"""A real ADK ``Runner`` on TetherSessionService, across two processes (examples/adk_runner.py).

A scripted ``BaseLlm`` calls a tool that writes ``user:`` state; each process runs one turn of
its own session of the same user. The second process sees the first one's ``user:`` count, the
events of both turns are stored in order (user message, function call, function response,
answer), the tool's ``temp:`` key is stored nowhere, and ``tether show`` / ``inspect`` render
the session readably.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    drop_postgres_schema,
    require_module,
    require_server,
    with_options,
)

require_module("google.adk", "adk")

from click.testing import CliRunner  # noqa: E402
from google.adk.agents import LlmAgent  # noqa: E402
from google.adk.errors import StaleSessionError  # noqa: E402
from google.adk.events.event import Event  # noqa: E402
from google.adk.events.event_actions import EventActions  # noqa: E402
from google.adk.runners import Runner  # noqa: E402
from google.genai import types  # noqa: E402

import tether  # noqa: E402
from tether.cli import cli  # noqa: E402
from tether.integrations.adk import TetherSessionService, session_tid  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "adk_runner.py"
if str(EXAMPLE.parent) not in sys.path:
    sys.path.insert(0, str(EXAMPLE.parent))

import adk_runner  # noqa: E402


def _turn(store_url: str, user: str, session: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), store_url, user, session],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite", "redis", "postgres"], indirect=True)
async def test_runner_in_two_processes_shares_user_state(store_url):
    assert _turn(store_url, "ada@example.com", "morning") == "visit 1"
    assert _turn(store_url, "ada@example.com", "evening") == "visit 2"
    assert _turn(store_url, "bob", "morning") == "visit 1"

    async with tether.open_async_store(store_url) as store:
        svc = TetherSessionService(store)
        assert await svc.get_user_state(app_name="visits", user_id="ada@example.com") == {
            "visits": 2
        }
        evening = await svc.get_session(
            app_name="visits", user_id="ada@example.com", session_id="evening"
        )
        assert evening is not None
        assert evening.state == {"user:visits": 2}
        kinds = []
        for event in evening.events:
            part = event.content.parts[0] if event.content and event.content.parts else None
            if part is None:
                continue
            kinds.append(
                "call"
                if part.function_call
                else "result"
                if part.function_response
                else f"{event.author}:{part.text}"
            )
        assert kinds == ["user:hello", "call", "result", "counter:visit 2"]
        raw = await store.load(session_tid("visits", "ada@example.com", "evening"))
        assert "temp:" not in raw.model_dump_json()

    # the CLI renders the ADK session readably: text under its author, the call, its result
    sid = session_tid("visits", "ada@example.com", "evening")
    for command in ("show", "inspect"):
        result = CliRunner().invoke(cli, ["--store", store_url, command, sid])
        assert result.exit_code == 0, (result.output, result.exception)
        out = result.stdout
        assert "hello" in out
        assert "count_visit" in out
        assert "visit 2" in out
        assert "adk.event" not in out


_CLI_START = """
import asyncio, sys
from google.adk.cli.service_registry import load_services_module
from google.adk.cli.utils.service_factory import create_session_service_from_options

agents_dir, uri = sys.argv[1], sys.argv[2]
load_services_module(agents_dir)  # what adk web / adk api_server do at start-up
service = create_session_service_from_options(base_dir=agents_dir, session_service_uri=uri)

async def main():
    await service.create_session(app_name="app", user_id="ada", session_id="s1")
    print(type(service).__name__)
    await service.close()

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["services.py", "services.yaml"])
async def test_session_service_uri_as_adk_web_starts(how, tmp_path):
    """``--session_service_uri=tether:<store url>`` as ``adk web`` / ``adk api_server`` resolve
    it: the agents directory's services.py (or services.yaml) registers the scheme, ADK's
    service factory builds a TetherSessionService on the store."""
    agents = tmp_path / "agents"
    agents.mkdir()
    if how == "services.py":
        (agents / how).write_text("from tether.integrations.adk import register\n\nregister()\n")
    else:
        (agents / how).write_text(
            "services:\n  - scheme: tether\n    type: session\n"
            "    class: tether.integrations.adk.TetherSessionService\n"
        )
    url = f"sqlite:///{tmp_path / 'adk.db'}"
    done = subprocess.run(
        [sys.executable, "-c", _CLI_START, str(agents), "tether:" + url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "TetherSessionService"
    async with tether.open_async_store(url) as store:
        assert await store.exists(session_tid("app", "ada", "s1"))


class _BothRead(TetherSessionService):
    """Holds each run's first get_session until both runs have read the session: the two
    Runners then start from one revision, as two requests for one session on two workers do."""

    def __init__(self, store: Any, gate: asyncio.Event, arrived: list[int]) -> None:
        super().__init__(store)
        self._gate, self._arrived = gate, arrived

    async def get_session(self, **kwargs: Any) -> Any:
        got = await super().get_session(**kwargs)
        self._arrived.append(1)
        late = len(self._arrived) == 2
        if len(self._arrived) >= 2:
            self._gate.set()
        await asyncio.wait_for(self._gate.wait(), 30)
        if late:
            # the other run writes first: this one's revision is then merely old, not racing
            await asyncio.sleep(0.3)
        return got


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_concurrent_runners_on_one_session_one_wins(kind, tmp_path):
    """Two ADK Runners on one session from the same revision: one run completes, the other
    stops at its first write with StaleSessionError; the stored session holds one turn and
    the user: count went up once. (ADK's in-memory and SQLite services store both turns.)"""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
        cleanup = None
    else:
        base = require_server("postgres")
        schema = f"tether_t_{uuid.uuid4().hex}"
        url, cleanup = with_options(base, schema=schema), (base, schema)
    try:
        async with tether.open_async_store(url) as store:
            gate = asyncio.Event()
            arrived: list[int] = []
            service = _BothRead(store, gate, arrived)
            await TetherSessionService(store).create_session(
                app_name=adk_runner.APP, user_id="ada", session_id="s"
            )

            async def run() -> str:
                agent = LlmAgent(
                    name="counter", model=adk_runner.ScriptedLlm(), tools=[adk_runner.count_visit]
                )
                runner = Runner(app_name=adk_runner.APP, agent=agent, session_service=service)
                message = types.Content(role="user", parts=[types.Part(text="hello")])
                try:
                    async for _ in runner.run_async(
                        user_id="ada", session_id="s", new_message=message
                    ):
                        pass
                finally:
                    await runner.close()
                return "done"

            results = await asyncio.gather(run(), run(), return_exceptions=True)
            stale = [r for r in results if isinstance(r, StaleSessionError)]
            assert (len(stale), results.count("done")) == (1, 1), results
            plain = TetherSessionService(store)
            got = await plain.get_session(app_name=adk_runner.APP, user_id="ada", session_id="s")
            assert got is not None
            assert [e.author for e in got.events] == ["user", "counter", "counter", "counter"]
            assert await plain.get_user_state(app_name=adk_runner.APP, user_id="ada") == {
                "visits": 1
            }
    finally:
        if cleanup is not None:
            drop_postgres_schema(*cleanup)


async def test_show_renders_state_only_and_escapes_text(tmp_path):
    """``tether show`` on an ADK session: an event with only state changes reads as its author
    and the changed keys; an event's text is escaped like any other item's."""
    url = f"sqlite:///{tmp_path / 'show.db'}"
    async with tether.open_async_store(url) as store:
        svc = TetherSessionService(store)
        session = await svc.create_session(app_name="a", user_id="u", session_id="s")
        await svc.append_event(
            session,
            Event(author="system", actions=EventActions(state_delta={"mood": 1, "user:x": 2})),
        )
        text = types.Content(role="model", parts=[types.Part(text="red \x1b[31mALERT")])
        await svc.append_event(session, Event(author="bot", content=text))
    result = CliRunner().invoke(cli, ["--store", url, "show", session_tid("a", "u", "s")])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "system" in result.stdout
    assert "mood" in result.stdout
    assert "user:x" in result.stdout
    assert "ALERT" in result.stdout
    assert "\x1b[31m" not in result.stdout
