"""TetherSaver across processes: two processes on one thread under ownership lose no turn, and
a process killed between a checkpoint's ``put`` and its ``put_writes`` is resumed by the next.
On SQLite and PostgreSQL (what several processes share)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import drop_postgres_schema, require_module, require_server, with_options

require_module("langgraph", "langgraph")

import tether  # noqa: E402
from tether.integrations.langgraph import TetherSaver  # noqa: E402

GRAPH = textwrap.dedent(
    """
    import operator, os, sys, time
    from typing import Annotated, TypedDict
    from langgraph.graph import END, START, StateGraph
    import tether
    from tether.errors import AlreadyClaimed, ConflictError
    from tether.integrations.langgraph import TetherSaver

    class Chat(TypedDict):
        messages: Annotated[list[str], operator.add]

    def reply(state):
        if os.environ.get("DIE_IN_STEP") and state["messages"][-1] == "die":
            os._exit(17)  # killed after the checkpoint's put, before its writes
        return {"messages": ["echo " + state["messages"][-1]]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    """
)

TURNS = GRAPH + textwrap.dedent(
    """
    url, name, turns = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with tether.open_store(url) as store:
        saver = TetherSaver(store, ownership=True)
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "shared"}}
        done = 0
        while done < turns:
            try:
                with saver.owning("shared", owner=name, ttl=30):
                    graph.invoke({"messages": [f"{name}-{done}"]}, config, durability="sync")
                done += 1
            except (AlreadyClaimed, ConflictError):
                time.sleep(0.005)  # the other process owns the thread: wait for its turn
    """
)

ONE = GRAPH + textwrap.dedent(
    """
    url, text = sys.argv[1], sys.argv[2]
    with tether.open_store(url) as store:
        graph = builder.compile(checkpointer=TetherSaver(store))
        config = {"configurable": {"thread_id": "crash"}}
        graph.invoke({"messages": [text]} if text != "-" else None, config, durability="sync")
    """
)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'threads.db'}"
    else:
        base = require_server("postgres")
        schema = f"tether_t_{uuid.uuid4().hex}"
        yield with_options(base, schema=schema)
        drop_postgres_schema(base, schema)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import os

    return subprocess.Popen([sys.executable, "-c", *args], env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_two_processes_on_one_thread_lose_no_turn(url: str) -> None:
    with tether.open_store(url):
        pass  # create the schema once, before two processes race to
    procs = [_run(TURNS, url, name, "6") for name in ("p1", "p2")]
    assert [p.wait(120) for p in procs] == [0, 0]
    with tether.open_store(url) as store:
        saver = TetherSaver(store)
        head = saver.get_tuple({"configurable": {"thread_id": "shared"}})
        assert head is not None
        messages = head.checkpoint["channel_values"]["messages"]
    for name in ("p1", "p2"):
        for turn in range(6):
            at = messages.index(f"{name}-{turn}")  # every turn is in the thread, once
            assert messages[at + 1] == f"echo {name}-{turn}"
    assert len(messages) == 24


@pytest.mark.slow
def test_a_process_killed_between_put_and_put_writes_is_resumed(url: str) -> None:
    assert _run(ONE, url, "hello").wait(60) == 0
    assert _run(ONE, url, "die", env={"DIE_IN_STEP": "1"}).wait(60) == 17
    with tether.open_store(url) as store:
        saver = TetherSaver(store)
        head = saver.get_tuple({"configurable": {"thread_id": "crash"}})
        assert head is not None
        assert head.checkpoint["channel_values"]["messages"][-1] == "die"
        assert head.pending_writes == []  # the step's writes never landed
    assert _run(ONE, url, "-").wait(60) == 0  # the next process resumes the step
    with tether.open_store(url) as store:
        head = TetherSaver(store).get_tuple({"configurable": {"thread_id": "crash"}})
        assert head is not None
        assert head.checkpoint["channel_values"]["messages"] == [
            "hello",
            "echo hello",
            "die",
            "echo die",
        ]
