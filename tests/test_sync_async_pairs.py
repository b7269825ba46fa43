"""The hand-written sync / async pairs (event delivery, hooks) and their one shared rule:
the async side awaits a user's coroutine, the sync side closes it and says what to use."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tether import AsyncSessions, Sessions
from tether.events import Event, SessionCreated
from tether.hooks import HookContext
from tether.stores.memory import AsyncMemoryStore, MemoryStore


def test_the_sync_runtime_refuses_an_async_hook_without_a_never_awaited_warning() -> None:
    # pytest runs with warnings as errors: an unclosed coroutine would fail this test too
    sessions = Sessions(MemoryStore())

    async def hook(ctx: HookContext) -> None:
        return None

    sessions.add_hook("before_create", hook, name="late")
    with pytest.raises(TypeError, match="hook 'late' is async; the sync Sessions cannot await"):
        sessions.create()


def test_the_sync_runtime_logs_an_async_event_handler_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = Sessions(MemoryStore())
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    sessions.subscribe(handler, SessionCreated)
    with caplog.at_level(logging.ERROR, logger="tether"):
        created = sessions.create()
    assert created.version == 1
    assert seen == []
    assert "an async event handler was subscribed to the sync Sessions" in caplog.text


async def test_the_async_runtime_awaits_hooks_and_handlers_and_calls_plain_ones() -> None:
    sessions = AsyncSessions(AsyncMemoryStore())
    calls: list[str] = []

    async def async_hook(ctx: HookContext) -> None:
        calls.append("async hook")

    def plain_hook(ctx: HookContext) -> None:
        calls.append("plain hook")

    async def async_handler(event: Any) -> None:
        calls.append(f"async handler {type(event).__name__}")

    def plain_handler(event: Any) -> None:
        calls.append(f"plain handler {type(event).__name__}")

    sessions.add_hook("before_create", async_hook, priority=1)
    sessions.add_hook("before_create", plain_hook)
    sessions.subscribe(async_handler, SessionCreated)
    sessions.subscribe(plain_handler, SessionCreated)
    await sessions.create()
    assert calls == [
        "async hook",
        "plain hook",
        "async handler SessionCreated",
        "plain handler SessionCreated",
    ]
