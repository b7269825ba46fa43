"""TetherSaver keeps small channel values (None, bools, numbers, short strings) inside their
checkpoint's item and lists the channels empty there, instead of an item per value: fewer rows
a step, every checkpoint's values still equal to LangGraph's own ``InMemorySaver``'s, threads
written before (every value an item of its own) still read, listed and extended, and a tether
that predates the layout refuses such a checkpoint rather than read it without its values."""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest

from .conftest import require_module

require_module("langgraph", "langgraph")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, Interrupt, interrupt  # noqa: E402

import tether  # noqa: E402
from tether.integrations import _langgraph_core as core  # noqa: E402
from tether.integrations import _langgraph_saver  # noqa: E402
from tether.integrations import _langgraph_values as values  # noqa: E402
from tether.integrations._langgraph_inline import tiny  # noqa: E402
from tether.integrations._langgraph_view import entry  # noqa: E402
from tether.integrations.langgraph import TetherSaver  # noqa: E402
from tether.stores.base import Store  # noqa: E402


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with tether.open_store(store_url) as opened:
        yield opened


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    count: int
    route: str | None
    ratio: float
    note: str


def _graph(saver: Any) -> Any:
    """A graph with small channels of every kind (int, str, None, float), a long str, a
    conditional edge (its branch channels hold None, then are emptied) and an interrupt."""

    def plan(state: State) -> dict[str, Any]:
        count = state.get("count", 0) + 1
        return {
            "count": count,
            "route": "ask" if count % 3 == 0 else None,
            "ratio": count / 4,
            "log": [f"plan {count}"],
        }

    def ask(state: State) -> dict[str, Any]:
        answer = interrupt(f"approve {state['count']}?")
        return {"log": [f"asked: {answer}"], "note": "long " * 40}

    def act(state: State) -> dict[str, Any]:
        return {"log": [f"act {state['count']}"], "route": None}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("ask", ask)
    builder.add_node("act", act)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", lambda s: "ask" if s.get("route") else "act")
    builder.add_edge("ask", "act")
    builder.add_edge("act", END)
    return builder.compile(checkpointer=saver)


def _cfg(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def _run(graph: Any, thread: str, turns: range) -> None:
    for turn in turns:
        graph.invoke({"log": [f"user {turn}"]}, _cfg(thread))
        if graph.get_state(_cfg(thread)).next:  # interrupted: resume it
            graph.invoke(Command(resume=f"yes {turn}"), _cfg(thread))


def _history(graph: Any, thread: str) -> list[tuple[Any, ...]]:
    """Every checkpoint as LangGraph shows it (ids differ between savers; nothing else)."""
    return [
        (
            s.values,
            s.next,
            s.metadata.get("step"),
            [[i.value for i in t.interrupts] for t in s.tasks],
        )
        for s in graph.get_state_history(_cfg(thread))
    ]


def _items(store: Store, thread: str) -> list[dict[str, Any]]:
    return [s.item for s in store.load(core.session_id(thread)).items]


def _blobs(store: Store, thread: str) -> list[dict[str, Any]]:
    return [i for i in _items(store, thread) if i["type"] == core.BLOB]


def test_tiny_values_are_exact_primitives() -> None:
    class Kind(str, enum.Enum):
        A = "a"

    for small in (None, True, 0, -(2**63), 2**64 - 1, 1.5, "", "x" * 64):
        assert tiny(small), small
    other: Any
    for other in ("x" * 65, 2**64, float("nan"), float("inf"), Kind.A, [], {}, b"", (1,)):
        assert not tiny(other), other


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_small_values_ride_in_the_checkpoint_and_read_as_langgraph_stores_them(
    store: Store,
) -> None:
    graph, memory = _graph(TetherSaver(store)), _graph(InMemorySaver())
    _run(graph, "t", range(7))
    _run(memory, "t", range(7))
    expected = _history(memory, "t")
    assert _history(graph, "t") == expected
    fresh = _graph(TetherSaver(store))  # nothing cached: every read from the store
    assert _history(fresh, "t") == expected
    for snapshot in fresh.get_state_history(_cfg("t")):  # get_tuple by id, each
        assert fresh.get_state(snapshot.config).values == snapshot.values
    # no item for a small value nor for an emptied channel; the long str has its own
    blobs = _blobs(store, "t")
    assert {b["channel"] for b in blobs} <= {"log", "note", "__start__"}, blobs
    assert all(b["value"][0] != "empty" for b in blobs)
    assert any(b["channel"] == "note" for b in blobs)
    checkpoints = [i for i in _items(store, "t") if i["type"] == core.CHECKPOINT]
    assert all(c["checkpoint"][2].endswith(values.INLINE) for c in checkpoints)
    assert any(c.get("empty") for c in checkpoints)
    # the CLI reads them (the encoding mark included) and shows the values they keep
    assert entry(checkpoints[-1])["text"].startswith("checkpoint ")
    assert any("; count = 7, route = null, ratio = 1.75" in entry(c)["text"] for c in checkpoints)
    # a fresh saver goes on from what it read (its empties unknown, read by key: absent)
    _run(fresh, "t", range(7, 10))
    _run(memory, "t", range(7, 10))
    assert _history(_graph(TetherSaver(store)), "t") == _history(memory, "t")


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_a_thread_written_with_every_value_an_item_reads_and_goes_on(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = _graph(InMemorySaver())
    with monkeypatch.context() as patched:  # the layout before: no value kept inline
        patched.setattr(_langgraph_saver, "kept_inline", lambda *_: ({}, {}))
        patched.setattr(_langgraph_saver, "mark_inline", lambda packed: packed)
        old = _graph(TetherSaver(store))
        _run(old, "old", range(4))
    _run(memory, "old", range(4))
    blobs = _blobs(store, "old")
    assert any(b["value"][0] == "empty" for b in blobs)  # emptied channels as items
    assert any(b["channel"] == "count" for b in blobs)  # small values as items
    items = _items(store, "old")
    assert not any(i.get("checkpoint", ["", "", ""])[-1].endswith(values.INLINE) for i in items)
    assert _history(_graph(TetherSaver(store)), "old") == _history(memory, "old")
    # continued by the new layout: checkpoints of both kinds in one thread, read alike
    new = _graph(TetherSaver(store))
    _run(new, "old", range(4, 8))
    _run(memory, "old", range(4, 8))
    assert _history(new, "old") == _history(memory, "old")
    assert _history(_graph(TetherSaver(store)), "old") == _history(memory, "old")
    marked = [
        i
        for i in _items(store, "old")
        if i["type"] == core.CHECKPOINT and i["checkpoint"][-1].endswith(values.INLINE)
    ]
    assert marked
    # prune keeps the newest checkpoint readable whichever layout its values are in
    saver = TetherSaver(store)
    saver.prune(["old"])
    assert _graph(saver).get_state(_cfg("old")).values == memory.get_state(_cfg("old")).values


def test_the_inline_mark_is_an_encoding_older_tethers_refuse() -> None:
    packed = values.pack(("msgpack", b"\x81\xa1a\xc0"))
    marked = values.mark_inline(packed)
    assert values.unpack(marked) == ("msgpack", b"\x81\xa1a\xc0")
    text = values.mark_inline(values.pack(("json", b'{"a": null}')))
    assert text[2] == values.TEXT + values.INLINE
    assert values.unpack(text) == ("json", b'{"a": null}')
    big = values.mark_inline(values.pack(("msgpack", b"\x00" * 4096)))
    assert big[2] == values.ZLIB + values.INLINE
    assert values.unpack(big) == ("msgpack", b"\x00" * 4096)
    # the encodings a tether before this layout knew: a marked checkpoint is none of them,
    # so such a tether raises ValueError (unknown encoding) instead of dropping the values
    before = {values.TEXT, values.ZLIB, values.DELTA, values.DELTA_ZLIB}
    assert {marked[2], text[2], big[2]}.isdisjoint(before)
    with pytest.raises(ValueError, match="encoding"):
        values.raw_bytes(["msgpack", "AAAA", "?" + values.INLINE])


def _writes(tup: Any) -> list[tuple[str, Any]]:
    """A checkpoint's pending writes, without task ids nor interrupt ids (they are made of
    checkpoint ids, which differ between savers)."""

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [plain(v) for v in value]
        return ("interrupt", value.value) if isinstance(value, Interrupt) else value

    return sorted((w[1], repr(plain(w[2]))) for w in tup.pending_writes or [])


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_writes_committed_after_their_checkpoint_need_no_mark(store: Store) -> None:
    saver, memory_saver = TetherSaver(store), InMemorySaver()
    graph, memory = _graph(saver), _graph(memory_saver)
    _run(graph, "w", range(6))
    _run(memory, "w", range(6))
    items = _items(store, "w")
    owners = {(i["ns"], i["checkpoint"]) for i in items if i["type"] == core.WRITE}
    marks = {(i["ns"], i["checkpoint"]) for i in items if i["type"] == core.MARK}
    assert owners - marks, "every write batch still has its mark"  # the layout is exercised
    expected = [_writes(t) for t in memory_saver.list(_cfg("w"))]
    assert any(expected)
    fresh = TetherSaver(store)
    listed = list(fresh.list(_cfg("w")))
    assert [_writes(t) for t in listed] == expected
    for tup in listed:  # by id, from a saver that did not write them: the same writes
        assert _writes(fresh.get_tuple(tup.config)) == _writes(tup)
    before = listed[len(listed) // 2]  # list(before=) reads back from a checkpoint
    assert [_writes(t) for t in fresh.list(_cfg("w"), before=before.config)] == expected[
        len(listed) // 2 + 1 :
    ]
