"""TetherSaver under real LangGraph graphs, on every built-in store, and what conformance does
not cover: keyed reads whose cost does not grow with the thread, channel values stored only
when they change, the known races (writes before their checkpoint, parallel tasks, time
travel), serde without pickle, and ownership (two concurrent invocations on one thread)."""

from __future__ import annotations

import operator
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from .conftest import (
    require_module,
)

require_module("langgraph", "langgraph")

from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.checkpoint.base.id import uuid6  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

import tether  # noqa: E402
from tether.errors import AlreadyClaimed, ConflictError  # noqa: E402
from tether.integrations._langgraph_core import BLOB, CHECKPOINT, session_id  # noqa: E402
from tether.integrations.langgraph import AGENT, AsyncTetherSaver, TetherSaver  # noqa: E402
from tether.stores.base import Store  # noqa: E402

STORES = ["memory", "file", "sqlite", "redis", "postgres"]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with tether.open_store(store_url) as opened:
        yield opened


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]
    turns: int


def _chat_graph(
    saver: Any, *, gate: threading.Event | None = None, started: threading.Event | None = None
) -> Any:
    def reply(state: Chat) -> dict[str, Any]:
        if started is not None and gate is not None and not gate.is_set():
            started.set()  # the run is inside its step, holding the thread
            gate.wait(5)
        return {"messages": [f"echo {state['messages'][-1]}"], "turns": state.get("turns", 0) + 1}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def _cfg(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


@pytest.mark.parametrize("store_url", STORES, indirect=True)
def test_chat_turns_state_history_and_interrupt(store: Store) -> None:
    saver = TetherSaver(store)
    graph = _chat_graph(saver)
    for turn in range(3):
        graph.invoke({"messages": [f"hi {turn}"]}, _cfg("t/1 with spaces"))
    state = graph.get_state(_cfg("t/1 with spaces"))
    assert state.values["messages"] == [
        "hi 0",
        "echo hi 0",
        "hi 1",
        "echo hi 1",
        "hi 2",
        "echo hi 2",
    ]
    assert state.values["turns"] == 3
    history = list(graph.get_state_history(_cfg("t/1 with spaces")))
    assert len(history) == 3 * 3 + 0  # input, loop, and reply checkpoints per turn
    assert store.load(session_id("t/1 with spaces"), last=0).agent == AGENT

    # an interrupt, then a resume: the pending write survives in the store
    def ask(state: Chat) -> dict[str, Any]:
        answer = interrupt("name?")
        return {"messages": [f"hello {answer}"]}

    builder = StateGraph(Chat)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    asking: Any = builder.compile(checkpointer=TetherSaver(store))
    asking.invoke({"messages": ["start"]}, _cfg("t2"))
    assert asking.get_state(_cfg("t2")).next == ("ask",)
    asking.invoke(Command(resume="ada"), _cfg("t2"))
    assert asking.get_state(_cfg("t2")).values["messages"] == ["start", "hello ada"]


@pytest.mark.parametrize("store_url", ["memory", "sqlite", "postgres"], indirect=True)
async def test_async_saver_runs_a_graph(store_url: str) -> None:
    async with tether.open_async_store(store_url) as astore:
        graph = _chat_graph(AsyncTetherSaver(astore))
        for turn in range(2):
            await graph.ainvoke({"messages": [f"m{turn}"]}, _cfg("a"))
        state = await graph.aget_state(_cfg("a"))
        assert state.values["messages"] == ["m0", "echo m0", "m1", "echo m1"]
        assert len([s async for s in graph.aget_state_history(_cfg("a"))]) == 6


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_async_saver_owning_claims_the_thread_and_releases_it(store_url: str) -> None:
    async with tether.open_async_store(store_url) as astore:
        saver = AsyncTetherSaver(astore, ownership=True)
        graph = _chat_graph(saver)
        async with saver.owning("o", owner="first") as lease:
            assert lease.owner == "first"
            await graph.ainvoke({"messages": ["x"]}, _cfg("o"))  # its writes carry the lease
            with pytest.raises(AlreadyClaimed):
                async with saver.owning("o", owner="second"):
                    pass
        async with saver.owning("o", owner="second"):  # released at the end of the block
            await graph.ainvoke({"messages": ["z"]}, _cfg("o"))
        state = await graph.aget_state(_cfg("o"))
        assert state.values["messages"] == ["x", "echo x", "z", "echo z"]


class _Counting:
    """Counts the items a store hands back through load (what a scan would cost)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.loaded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load(self, *args: Any, **kwargs: Any) -> Any:
        session = self.inner.load(*args, **kwargs)
        self.loaded += len(session.items)
        return session


@pytest.mark.heavy
@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_get_tuple_reads_do_not_grow_with_the_thread(store: Store) -> None:
    """The head is read with the thread's newest items (a window sized by the last head read),
    a checkpoint by id by key: the items read at turn 10 and 60 are the same few, give or take
    where a step's writes landed (a scan would read every item of the thread: over 1,000)."""
    counting = _Counting(store)
    saver = TetherSaver(counting)  # type: ignore[arg-type]
    graph = _chat_graph(TetherSaver(store))
    costs = []
    for turns in (10, 60):
        while len(list(saver.list(_cfg("long")))) < turns * 3:
            graph.invoke({"messages": ["x"]}, _cfg("long"))
        assert saver.get_tuple(_cfg("long")) is not None  # sizes the head's window
        counting.loaded = 0
        head = saver.get_tuple(_cfg("long"))
        assert head is not None
        by_id = saver.get_tuple(head.config)
        assert by_id is not None
        assert by_id.checkpoint["id"] == head.checkpoint["id"]
        costs.append(counting.loaded)
    assert abs(costs[0] - costs[1]) <= 4, costs
    assert costs[1] < 32, costs


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
def test_only_changed_channel_values_are_stored(store: Store) -> None:
    """A channel written once is stored once, however many checkpoints follow (linear, not
    quadratic, growth); every checkpoint still reads it back."""

    class State(TypedDict):
        big: str
        count: int

    def step(state: State) -> dict[str, Any]:
        return {"count": state.get("count", 0) + 1}

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    graph: Any = builder.compile(checkpointer=TetherSaver(store))
    graph.invoke({"big": "B" * 10_000, "count": 0}, _cfg("lin"))
    for _ in range(20):
        graph.invoke({}, _cfg("lin"))
    items = store.load(session_id("lin")).items
    big_blobs = [s for s in items if s.item.get("type") == BLOB and s.item["channel"] == "big"]
    assert len(big_blobs) == 1
    assert graph.get_state(_cfg("lin")).values == {"big": "B" * 10_000, "count": 21}
    for snapshot in list(graph.get_state_history(_cfg("lin")))[:-1]:
        assert snapshot.values["big"] == "B" * 10_000


@pytest.mark.parametrize("store_url", ["memory", "sqlite", "redis"], indirect=True)
def test_races_writes_before_put_parallel_tasks_and_time_travel(store: Store) -> None:
    saver = TetherSaver(store)
    first = empty_checkpoint()
    base = saver.put({"configurable": {"thread_id": "r", "checkpoint_ns": ""}}, first, {}, {})
    later = {**empty_checkpoint(), "id": str(uuid6())}
    cfg_later: Any = {
        "configurable": {"thread_id": "r", "checkpoint_ns": "", "checkpoint_id": later["id"]}
    }
    # writes for a checkpoint persisted before the checkpoint itself
    saver.put_writes(cfg_later, [("early", 1)], "task-a")
    saver.put(base, later, {}, {})  # type: ignore[arg-type]
    tup = saver.get_tuple(cfg_later)
    assert tup is not None
    assert [w[1:] for w in tup.pending_writes or []] == [("early", 1)]

    # parallel tasks write to one thread at once: every write lands, none twice
    def task(n: int) -> None:
        saver.put_writes(cfg_later, [("ch", n), ("other", -n)], f"task-{n}")

    threads = [threading.Thread(target=task, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tup = saver.get_tuple(cfg_later)
    assert tup is not None
    assert len(tup.pending_writes or []) == 1 + 16
    saver.put_writes(cfg_later, [("ch", 99)], "task-3")  # same (task, idx): kept as first
    tup = saver.get_tuple(cfg_later)
    assert tup is not None
    assert ("task-3", "ch", 3) in (tup.pending_writes or [])
    assert ("task-3", "ch", 99) not in (tup.pending_writes or [])

    # time travel: a fork of the first checkpoint, written last, with the newest id, is head
    fork = {**empty_checkpoint(), "id": str(uuid6())}
    saver.put(base, fork, {}, {})  # type: ignore[arg-type]
    head = saver.get_tuple({"configurable": {"thread_id": "r"}})
    assert head is not None
    assert head.checkpoint["id"] == fork["id"]
    # and an older id written after a newer one does not become the head
    older = {**empty_checkpoint(), "id": first["id"][:-1] + "0"}
    saver.put(base, older, {}, {})  # type: ignore[arg-type]
    head = saver.get_tuple({"configurable": {"thread_id": "r"}})
    assert head is not None
    assert head.checkpoint["id"] == fork["id"]


def test_values_go_through_serde_never_pickle(store: Store) -> None:
    graph = _chat_graph(TetherSaver(store))
    graph.invoke({"messages": ["hi"]}, _cfg("s"))
    types = set()
    for stored in store.load(session_id("s")).items:
        fields = ("checkpoint", "metadata") if stored.item["type"] == CHECKPOINT else ("value",)
        for field in fields:
            if field in stored.item:
                types.add(stored.item[field][0])
    assert types
    assert "pickle" not in types
    assert types <= {"msgpack", "json", "empty", "null", "bytes", "bytearray"}, types


def test_ownership_two_concurrent_invokes(store: Store) -> None:
    """Two invocations on one thread at once: without ownership both "succeed" and the
    second silently builds on a head the first no longer sees; with it the second fails at
    once (the claim), and a stale run's checkpoint is refused by the versioned write."""
    saver = TetherSaver(store, ownership=True)
    gate, started = threading.Event(), threading.Event()
    graph = _chat_graph(saver, gate=gate, started=started)
    gate.set()
    graph.invoke({"messages": ["seed"]}, _cfg("own"))
    errors: list[BaseException] = []
    done = threading.Event()

    def first() -> None:
        with saver.owning("own"):
            graph.invoke({"messages": ["one"]}, _cfg("own"))
        done.set()

    runner = threading.Thread(target=first)
    gate.clear()
    runner.start()
    assert started.wait(5)
    try:
        # the second invocation while the first holds the thread: refused at once
        with pytest.raises(AlreadyClaimed), saver.owning("own"):
            pass
        try:
            _chat_graph(saver).invoke({"messages": ["two"]}, _cfg("own"))
        except AlreadyClaimed as exc:
            errors.append(exc)
    finally:
        gate.set()
        runner.join(10)
    assert done.is_set()
    assert len(errors) == 1
    messages = graph.get_state(_cfg("own")).values["messages"]
    assert messages == ["seed", "echo seed", "one", "echo one"]

    # a stale run: a checkpoint whose parent is no longer the head is refused
    stale_parent = list(saver.list(_cfg("own")))[-1].config
    with pytest.raises(ConflictError, match="moved on"):
        saver.put(stale_parent, empty_checkpoint(), {"source": "loop", "step": 9}, {})
    assert graph.get_state(_cfg("own")).values["messages"] == messages


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
def test_fork_by_update_state_runs_on_its_own_values(store: Store) -> None:
    """Time travel: a fork reaches the same version counter as the timeline it left, so
    versions carry a random tail (a shared version would read the old timeline's value)."""
    graph = _chat_graph(TetherSaver(store))
    graph.invoke({"messages": ["a"]}, _cfg("tt"))
    history = list(graph.get_state_history(_cfg("tt")))
    before_reply = next(s for s in history if s.next == ("reply",))
    fork = graph.update_state(before_reply.config, {"messages": ["forked"]})
    result = graph.invoke(None, fork)
    assert result["messages"] == ["a", "forked", "echo forked"]


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_async_saver_answers_sync_calls_from_a_worker_thread(store_url: str) -> None:
    """A sync node of an async graph calls the saver's sync methods from a worker thread."""
    import asyncio

    async with tether.open_async_store(store_url) as astore:
        saver = AsyncTetherSaver(astore)
        graph = _chat_graph(saver)
        await graph.ainvoke({"messages": ["x"]}, _cfg("w"))
        state = await asyncio.to_thread(graph.get_state, _cfg("w"))
        assert state.values["messages"] == ["x", "echo x"]


def test_the_offline_example_runs(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).parent.parent / "examples" / "langgraph_chat.py"
    spec = importlib.util.spec_from_file_location("langgraph_chat_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # LangGraph resolves the state's annotations through it
    spec.loader.exec_module(module)
    lines = module.main(f"sqlite:///{tmp_path / 'graph.db'}")
    assert lines[:6] == [
        "hello",
        "echo: hello",
        "how are you?",
        "echo: how are you?",
        "bye",
        "echo: bye",
    ]
    assert "second run refused: the thread is owned by the first" in lines
    assert lines[-1] == "echo: first run"


def test_ownership_allows_forks_by_update_state(store: Store) -> None:
    """Ownership judges the loop's checkpoints only: a fork by update_state from an older
    checkpoint is a new branch on purpose; the run from it continues on its own head."""
    graph = _chat_graph(TetherSaver(store, ownership=True))
    graph.invoke({"messages": ["a"]}, _cfg("of"))
    graph.invoke({"messages": ["b"]}, _cfg("of"))
    first_turn = next(
        s for s in graph.get_state_history(_cfg("of")) if s.values.get("messages") == ["a"]
    )
    fork = graph.update_state(first_turn.config, {"messages": ["forked"]})
    result = graph.invoke(None, fork)
    assert result["messages"] == ["a", "forked", "echo forked"]
