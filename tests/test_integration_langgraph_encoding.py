"""TetherSaver's value encoding and header cache: large values stored compressed (and shown
safely by the CLI renderer), threads written in the first layout still read and extended, a
``put`` that commits against the header it cached (one store call) and a stale cache caught
by the store's versioned write, never trusted to refuse a write."""

from __future__ import annotations

import base64
import operator
import uuid
import zlib
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest

from .conftest import require_module

require_module("langgraph", "langgraph")

from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402

import tether  # noqa: E402
from tether.errors import ConflictError  # noqa: E402
from tether.integrations import _langgraph_core as core  # noqa: E402
from tether.integrations import _langgraph_saver  # noqa: E402
from tether.integrations import _langgraph_values as values  # noqa: E402
from tether.integrations._langgraph_view import entry  # noqa: E402
from tether.integrations.langgraph import TetherSaver  # noqa: E402
from tether.stores.base import Store  # noqa: E402


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with tether.open_store(store_url) as opened:
        yield opened


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def _graph(saver: Any) -> Any:
    def reply(state: Chat) -> dict[str, Any]:
        # prose-like and long: the message list compresses, as a real chat's does
        return {"messages": [f"echo {state['messages'][-1]} " + "lorem ipsum dolor " * 40]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def _cfg(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def _values(store: Store, thread: str) -> list[list[str]]:
    out: list[list[str]] = []
    for stored in store.load(core.session_id(thread)).items:
        item = stored.item
        fields = ("checkpoint", "metadata") if item["type"] == core.CHECKPOINT else ("value",)
        out.extend(item[field] for field in fields if field in item)
    return out


def _first_layout(typed: tuple[str, bytes]) -> list[str]:
    """How the first release packed every value: ``[type, base64]``."""
    return [typed[0], base64.b64encode(typed[1]).decode("ascii")]


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_large_values_are_stored_compressed_and_read_back(store: Store) -> None:
    graph = _graph(TetherSaver(store))
    for turn in range(4):
        graph.invoke({"messages": [f"turn {turn}"]}, _cfg("z"))
    packed = _values(store, "z")
    compressed = [p for p in packed if len(p) == 3 and p[2] == values.ZLIB]
    assert compressed, packed
    for value in compressed:  # smaller than the serde's bytes, and the same bytes back
        raw = values.raw_bytes(value)
        assert len(value[1]) < len(base64.b64encode(raw))
    assert all(len(p) in (2, 3, 4) for p in packed)  # 4: a delta (test_..._deltas.py)
    # a fresh saver (no cache) reads what was written, state and history alike
    other = _graph(TetherSaver(store))
    messages = other.get_state(_cfg("z")).values["messages"]
    assert [m.split(" lorem")[0] for m in messages] == [
        text for turn in range(4) for text in (f"turn {turn}", f"echo turn {turn}")
    ]
    history = list(other.get_state_history(_cfg("z")))
    assert len(history) == 4 * 3
    assert [len(s.values.get("messages", [])) for s in history][:4] == [8, 7, 6, 6]


def test_json_serde_values_are_stored_as_text() -> None:
    packed = values.pack(("json", b'{"a": [1, 2, "\\u00e9"]}'))
    assert packed == ["json", '{"a": [1, 2, "\\u00e9"]}', values.TEXT]
    assert values.unpack(packed) == ("json", b'{"a": [1, 2, "\\u00e9"]}')
    small = values.pack(("msgpack", b"\x91\x01"))
    assert small == ["msgpack", base64.b64encode(b"\x91\x01").decode()]  # the first layout
    # under 1 KB nothing is compressed, however well it would shrink: CPU in LangGraph's
    # threads over a few hundred bytes (values._COMPRESS_FROM)
    assert len(values.pack(("bytes", b"\0" * 1000))) == 2
    noise = uuid.uuid4().bytes * 80  # repeats: compresses
    assert values.pack(("bytes", noise))[2] == values.ZLIB
    assert values.unpack(values.pack(("bytes", noise))) == ("bytes", noise)
    with pytest.raises(ValueError, match="encoding"):
        values.raw_bytes(["msgpack", "AAAA", "rot13"])


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_threads_written_in_the_first_layout_still_load_and_go_on(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(_langgraph_saver, "pack", _first_layout)
        patched.setattr(values, "pack", _first_layout)
        patched.setattr(values, "_DELTA_FROM", 2**62)  # no deltas then
        # every channel value an item of its own then (no values kept in the checkpoint)
        patched.setattr(_langgraph_saver, "kept_inline", lambda *_: ({}, {}))
        patched.setattr(_langgraph_saver, "mark_inline", lambda packed: packed)
        old = _graph(TetherSaver(store))
        for turn in range(3):
            old.invoke({"messages": [f"old {turn}"]}, _cfg("legacy"))
    assert all(len(p) == 2 for p in _values(store, "legacy"))
    saver = TetherSaver(store)
    graph = _graph(saver)
    before = graph.get_state(_cfg("legacy")).values["messages"]
    assert [m.split(" lorem")[0] for m in before][-2:] == ["old 2", "echo old 2"]
    assert len(list(graph.get_state_history(_cfg("legacy")))) == 9
    graph.invoke({"messages": ["new"]}, _cfg("legacy"))  # new values beside the old ones
    packed = _values(store, "legacy")
    assert any(len(p) == 3 for p in packed)
    assert any(len(p) == 4 for p in packed)  # the new turn's list: a delta on a new snapshot
    assert any(len(p) == 2 for p in packed)
    after = _graph(TetherSaver(store)).get_state(_cfg("legacy")).values["messages"]
    assert after[: len(before)] == before
    assert [m.split(" lorem")[0] for m in after[-2:]] == ["new", "echo new"]
    history = list(graph.get_state_history(_cfg("legacy")))
    assert len(history) == 12
    # the first turn's checkpoints, written in the old layout
    assert [s.values.get("messages", []) for s in history[-2:]] == [["old 0"], []]
    assert history[-3].values["messages"][1].startswith("echo old 0 lorem")


def test_the_renderer_shows_compressed_values_and_refuses_bombs() -> None:
    fine = {"type": core.BLOB, "channel": "notes", "value": values.pack(("json", b'"hi"'))}
    assert entry(fine)["text"] == "notes = hi"
    big = values.pack(("json", b'"' + b"word " * 2000 + b'"'))
    assert big[2] == values.ZLIB
    shown = entry({"type": core.BLOB, "channel": "notes", "value": big})["text"]
    assert shown.startswith("notes = word word")
    # 200 MiB of zeros in a few hundred KiB: shown as unreadable, never inflated whole
    bomb = zlib.compress(b"\0" * (200 * 2**20), 9)
    value = ["msgpack", base64.b64encode(bomb).decode(), values.ZLIB]
    shown = entry({"type": core.BLOB, "channel": "x", "value": value})["text"]
    assert shown == "x = <msgpack, unreadable>"
    for broken in (
        ["msgpack", "%%%", values.ZLIB],
        ["msgpack", base64.b64encode(b"not zlib").decode(), values.ZLIB],
        ["msgpack", "AAAA", "?"],
    ):
        text = entry({"type": core.BLOB, "channel": "x", "value": broken})["text"]
        assert text.startswith("x = <msgpack, "), text


class _Calls:
    """Counts a store's calls by name."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_put_commits_against_its_cached_header(store: Store) -> None:
    """A ``put`` after this saver's own writes is one commit (no header read); after another
    saver wrote, the stale commit is refused and retried on a fresh read, and both savers'
    checkpoints chain as they would with reads."""
    calls = _Calls(store)
    saver = TetherSaver(calls)  # type: ignore[arg-type]
    graph = _graph(saver)
    graph.invoke({"messages": ["one"]}, _cfg("c"))
    calls.calls.clear()
    graph.invoke({"messages": ["two"]}, _cfg("c"))
    # (LangGraph runs a put and its writes in parallel, so how many reads a turn costs
    # depends on which returns first.) One after the other, a put is its commit and a
    # put_writes its append: nothing read.
    head = saver.get_tuple(_cfg("c"))
    assert head is not None
    calls.calls.clear()
    child = empty_checkpoint()
    config = saver.put(head.config, child, {"source": "loop", "step": 7}, {})
    saver.put_writes(config, [("messages", ["x"])], "task-1")
    grandchild = saver.put(config, empty_checkpoint(), {"source": "loop", "step": 8}, {})
    assert calls.calls == ["commit", "append", "commit"]
    assert saver.get_tuple(grandchild) is not None
    graph.invoke({"messages": ["two and a half"]}, _cfg("c"))

    other = _graph(TetherSaver(store))
    other.invoke({"messages": ["three"]}, _cfg("c"))  # saver's cache is stale now
    head = saver.get_tuple(_cfg("c"))
    assert head is not None
    # put straight on the stale cache (no get_tuple first): the store refuses, it re-reads
    stale = TetherSaver(store)
    stale._threads._headers.update(saver._threads._headers)  # a copy of the old cache
    other.invoke({"messages": ["four"]}, _cfg("c"))
    config = stale.put(head.config, empty_checkpoint(), {"source": "update", "step": 99}, {})
    newest = TetherSaver(store).get_tuple(_cfg("c"))
    assert newest is not None
    assert newest.checkpoint["id"] == config["configurable"]["checkpoint_id"]
    ids = [t.checkpoint["id"] for t in TetherSaver(store).list(_cfg("c"))]
    assert len(ids) == 5 * 3 + 2 + 1
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_ownership_refuses_on_the_store_never_on_a_stale_cache(store: Store) -> None:
    """A cached header naming another head is checked against the store before a refusal:
    after a rewrite made this saver's parent the head again, its checkpoint is accepted; a
    parent that really moved on is refused."""
    saver = TetherSaver(store, ownership=True)
    first = saver.put(_cfg("o"), empty_checkpoint(), {"source": "input", "step": -1}, {})
    second = empty_checkpoint()
    saver.put(first, second, {"source": "loop", "step": 0, "run_id": "r2"}, {})
    TetherSaver(store).delete_for_runs(["r2"])  # another saver removes the second run
    head = TetherSaver(store).get_tuple(_cfg("o"))
    assert head is not None
    assert head.config == first
    # this saver's cache still names ``second`` the head: it re-reads and accepts the put
    third = saver.put(first, empty_checkpoint(), {"source": "loop", "step": 0}, {})
    assert TetherSaver(store).get_tuple(_cfg("o")).config == third  # type: ignore[union-attr]
    with pytest.raises(ConflictError, match="moved on"):
        saver.put(first, empty_checkpoint(), {"source": "loop", "step": 0}, {})
