"""TetherSaver's message lists stored as deltas on a snapshot: the bytes rebuilt exactly, every
checkpoint's values equal to LangGraph's own ``InMemorySaver``'s, far less stored than whole
lists, a value changed in place stored whole, and no delta left naming a snapshot that a
rewrite or a delete removed (another saver's prune, delete_for_runs, delete and re-create)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import require_module

require_module("langgraph", "langgraph")

import ormsgpack  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402

import tether  # noqa: E402
from tether.integrations import _langgraph_core as core  # noqa: E402
from tether.integrations import _langgraph_saver as saver_module  # noqa: E402
from tether.integrations import _langgraph_values as values  # noqa: E402
from tether.integrations._langgraph_view import entry  # noqa: E402
from tether.integrations.langgraph import TetherSaver  # noqa: E402
from tether.stores.base import Store  # noqa: E402


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with tether.open_store(store_url) as opened:
        yield opened


_WORDS = "the agent reads history calls a tool waits for an answer and writes what it decided"


def _prose(seed: str, words: int) -> str:
    """Varied words (a chat's messages do not repeat each other: zlib cannot fold them)."""
    pick = random.Random(seed).choice
    return " ".join(pick(_WORDS.split()) + str(pick(range(100))) for _ in range(words))


def _chat(saver: Any) -> Any:
    def respond(state: MessagesState) -> dict[str, Any]:
        turn = len(state["messages"]) // 2
        text = f"answer {turn}: " + _prose(f"ai {turn}", 100)
        return {"messages": [AIMessage(content=text, id=f"ai-{turn}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    return builder.compile(checkpointer=saver)


def _turn(graph: Any, thread: str, turn: int) -> None:
    message = HumanMessage(content=f"question {turn} " + _prose(f"h {turn}", 25), id=f"h-{turn}")
    graph.invoke({"messages": [message]}, _cfg(thread))


def _cfg(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def _history(graph: Any, thread: str) -> list[Any]:
    """Every checkpoint's values, newest first (ids differ between savers; values do not)."""
    return [s.values for s in graph.get_state_history(_cfg(thread))]


def _blobs(store: Store, thread: str) -> list[dict[str, Any]]:
    items = store.load(core.session_id(thread)).items
    return [s.item for s in items if s.item.get("type") == core.BLOB]


def _deltas(store: Store, thread: str) -> list[list[str]]:
    return [b["value"] for b in _blobs(store, thread) if values.base_of(b["value"]) is not None]


def test_split_and_join_rebuild_the_serde_bytes_exactly() -> None:
    for old, new in ((3, 9), (15, 16), (10, 40), (65_535, 65_537), (16, 70_000)):
        first = ormsgpack.packb(list(range(old)))
        second = ormsgpack.packb(list(range(new)))
        delta = values.split(first, second)
        assert delta is not None, (old, new)
        assert ormsgpack.unpackb(delta) == list(range(old, new))  # a msgpack array itself
        assert values.join(first, delta) == second
    base = ormsgpack.packb(["a", "b", "c"])
    assert values.split(base, ormsgpack.packb(["a", "B", "c", "d"])) is None  # changed
    assert values.split(base, ormsgpack.packb(["a", "b"])) is None  # shorter
    assert values.split(base, ormsgpack.packb(["a", "b", "c"])) is None  # nothing new
    assert values.split(base, ormsgpack.packb({"a": 1})) is None  # not an array
    assert values.split(ormsgpack.packb(["ab"]), ormsgpack.packb(["abc", "d"])) is None
    # the same elements under a longer header than msgpack writers make (array16 for 4):
    # join would write the short one, so no delta rebuilds these bytes
    padded = b"\xdc\x00\x04" + ormsgpack.packb(["a", "b", "c", "d"])[1:]
    assert ormsgpack.unpackb(padded) == ["a", "b", "c", "d"]
    assert values.split(base, padded) is None
    with pytest.raises(ValueError, match="joined to its snapshot"):
        values.raw_bytes(values.pack_delta("msgpack", b"\x91\x01", "b[...]"))


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_a_chat_reads_back_as_langgraph_stores_it_in_a_fraction_of_the_bytes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = TetherSaver(store)
    graph, memory = _chat(saver), _chat(InMemorySaver())
    for turn in range(20):
        _turn(graph, "d", turn)
        _turn(memory, "d", turn)
    expected = _history(memory, "d")
    assert _history(graph, "d") == expected
    fresh = _chat(TetherSaver(store))  # no cache: reads snapshots by key
    assert fresh.get_state(_cfg("d")).values == memory.get_state(_cfg("d")).values
    assert _history(fresh, "d") == expected
    old = fresh.get_state_history(_cfg("d"))
    some = list(old)[9]
    assert fresh.get_state(some.config).values == some.values  # get_tuple by id
    deltas = _deltas(store, "d")
    assert len(deltas) > 20  # most of the list's versions
    snapshots = {values.base_of(d) for d in deltas}
    whole = {k for k in snapshots if k is not None}
    assert len(whole) < len(deltas) / 2
    with monkeypatch.context() as patched:
        patched.setattr(values, "_DELTA_FROM", 2**62)
        plain = _chat(TetherSaver(store))
        for turn in range(20):
            _turn(plain, "whole", turn)
    assert _history(plain, "whole") == expected
    assert not _deltas(store, "whole")

    def size(thread: str) -> int:
        return sum(len(str(b["value"])) for b in _blobs(store, thread))

    assert size("d") * 2 < size("whole")
    # the renderer shows a delta as what it adds
    shown = entry([b for b in _blobs(store, "d") if len(b["value"]) == 4][-1])["text"]
    assert shown.startswith("messages += ")
    assert "ai: answer" in shown


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_list_changed_in_place_is_stored_whole(store: Store) -> None:
    """A list whose earlier elements changed (in place, as a careless node may do) no longer
    extends its snapshot byte for byte: stored whole, every checkpoint reads as it was."""
    saver = TetherSaver(store)
    items: list[dict[str, Any]] = [{"n": i, "pad": "x" * 20} for i in range(60)]
    config, version, expected = _cfg("t"), None, []
    for step in range(8):
        if step % 3 == 2:
            items[0]["n"] += 1000  # in place
        items.extend({"n": step, "new": True} for _ in range(3))
        version = saver.get_next_version(version, None)
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"items": items}
        checkpoint["channel_versions"] = {"items": version}
        config = saver.put(config, checkpoint, {"source": "loop", "step": step}, {"items": version})
        expected.append((config, copy.deepcopy(items)))
    fresh = TetherSaver(store)
    for at, value in expected:
        tup = fresh.get_tuple(at)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["items"] == value
    stored = [b["value"] for b in _blobs(store, "t")]
    assert sum(values.base_of(v) is not None for v in stored) == 5  # the steps that extend
    assert [s.checkpoint["channel_values"]["items"] for s in fresh.list(_cfg("t"))] == [
        value for _, value in reversed(expected)
    ]


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_no_delta_names_a_snapshot_a_rewrite_removed(store: Store) -> None:
    saver = TetherSaver(store)
    graph = _chat(saver)
    for turn in range(6):
        _turn(graph, "r", turn)
    # another saver (process) prunes: the snapshots this saver remembers may be gone
    TetherSaver(store).prune(["r"], strategy="keep_latest")
    for turn in range(6, 9):
        _turn(graph, "r", turn)
    TetherSaver(store).delete_for_runs(["no such run"])  # a rewrite that keeps everything
    _turn(graph, "r", 9)
    # deleted and made again by another saver, then this one goes on
    TetherSaver(store).delete_thread("r")
    other = _chat(TetherSaver(store))
    for turn in range(3):
        _turn(other, "r", turn)
    for turn in range(3, 6):
        _turn(graph, "r", turn)
    blobs = {k: s for s in store.load(core.session_id("r")).items if (k := s.key)}
    for value in (b["value"] for b in _blobs(store, "r")):
        base = values.base_of(value)
        assert base is None or base in blobs
    memory = _chat(InMemorySaver())
    for turn in range(6):
        _turn(memory, "r", turn)
    fresh = _chat(TetherSaver(store))
    assert fresh.get_state(_cfg("r")).values == memory.get_state(_cfg("r")).values
    assert _history(fresh, "r") == _history(memory, "r")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_saver_that_did_not_write_the_head_extends_it(store: Store) -> None:
    """Turns taken by different processes (one saver each): each reads the head at the start
    of its invoke and stores its values as deltas on the snapshot it read, as one saver
    taking every turn would (without that, each turn's first list would be stored whole)."""
    one = _chat(TetherSaver(store))
    first = _chat(TetherSaver(store))
    for turn in range(10):
        _turn(one, "single", turn)
        _turn(first if turn < 4 else _chat(TetherSaver(store)), "many", turn)

    def whole(thread: str) -> int:
        blobs = [b for b in _blobs(store, thread) if b["channel"] == "messages"]
        assert len(blobs) == 20
        return sum(values.base_of(b["value"]) is None for b in blobs)

    assert whole("many") <= whole("single") < 10
    memory = _chat(InMemorySaver())
    for turn in range(10):
        _turn(memory, "many", turn)
    assert _history(_chat(TetherSaver(store)), "many") == _history(memory, "many")


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_the_head_this_process_put_is_decoded_from_its_kept_bytes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head read of values this saver stored last decodes the serde bytes it kept (no
    delta inflated and joined to its snapshot again), and gives what a saver that did not
    write them reads from the store; a value another saver stored since is read from the
    store, not taken from memory."""
    saver = TetherSaver(store)
    graph = _chat(saver)
    for turn in range(6):
        _turn(graph, "kept", turn)
    assert _deltas(store, "kept")  # the head's list is a delta on a snapshot
    inflated: list[Any] = []
    real = values.payload

    def counted(packed: Any, limit: int | None = None) -> bytes:
        inflated.append(packed)
        return real(packed, limit)

    monkeypatch.setattr(saver_module, "payload", counted)
    head = saver.get_tuple(_cfg("kept"))
    assert head is not None
    assert inflated == []
    other = TetherSaver(store).get_tuple(_cfg("kept"))
    assert other is not None
    assert inflated  # read from the store: the delta inflated and joined
    assert head.checkpoint["channel_values"] == other.checkpoint["channel_values"]
    assert head.checkpoint["channel_values"]["messages"][-1].id == "ai-5"
    # another saver takes a turn: this one reads its values from the store
    _turn(_chat(TetherSaver(store)), "kept", 6)
    inflated.clear()
    after = saver.get_tuple(_cfg("kept"))
    assert after is not None
    assert inflated
    assert after.checkpoint["channel_values"]["messages"][-1].id == "ai-6"
    assert [m.id for m in after.checkpoint["channel_values"]["messages"]][-4:] == [
        "h-5",
        "ai-5",
        "h-6",
        "ai-6",
    ]
