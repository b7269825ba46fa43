"""Two turns on one session at the same time: one runs, the other gets AlreadyRunning at once.

Sync agents race in threads, async agents as tasks on one event loop; SQLite and PostgreSQL
are shared by both runners, so the claim is what keeps them apart.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import tether
from tether.agent import Agent, AsyncAgent, ModelReply, ModelRequest, ScriptedModel
from tether.stores.sqlite import AsyncSQLiteStore, SQLiteStore


def _said(store: tether.Store) -> list[str]:
    history = store.load("s1").history
    return [i["content"] for i in history if i["role"] in ("user", "assistant")]


def test_threads(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    store.create(tether.Session(id="s1"))
    inside, leave = threading.Event(), threading.Event()

    def slow(request: ModelRequest) -> ModelReply:
        inside.set()  # the first turn is in its model call, holding the session
        assert leave.wait(30)
        return ModelReply(text="first")

    first = Agent(store, llm=slow, runner="a")
    second_model = ScriptedModel(["never"])
    second = Agent(store, llm=second_model, runner="b")
    thread = threading.Thread(target=first.run, args=("s1", "one at a time"))
    thread.start()
    assert inside.wait(30)
    with pytest.raises(tether.AlreadyRunning):
        second.run("s1", "me too")
    leave.set()
    thread.join(30)
    assert second_model.requests == [], "refused before any model call"
    assert _said(store) == ["one at a time", "first"], "nothing of the refused turn was written"


async def test_tasks(tmp_path: Path) -> None:
    store = AsyncSQLiteStore(tmp_path / "a.db")
    await store.create(tether.Session(id="s1"))
    inside, leave = asyncio.Event(), asyncio.Event()

    async def slow(request: ModelRequest) -> ModelReply:
        inside.set()
        await leave.wait()
        return ModelReply(text="first")

    first = AsyncAgent(store, llm=slow, runner="a")
    second = AsyncAgent(store, llm=ScriptedModel(["never"]), runner="b")
    task = asyncio.create_task(first.run("s1", "one at a time"))
    await asyncio.wait_for(inside.wait(), 30)
    with pytest.raises(tether.AlreadyRunning):
        await second.run("s1", "me too")
    leave.set()
    await asyncio.wait_for(task, 30)
    assert _said(store.sync) == ["one at a time", "first"]
    await store.close()
