"""A ``put_writes`` waiting for its thread's lock while a ``put`` of the thread waits too is
committed with that put's checkpoint: one commit; a previous checkpoint's writes before it (the
order they would land one by one), its own checkpoint's after it, without a first-write mark.
Writes the put cannot take (keys stored already) still land, on their own, after it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import require_module

require_module("langgraph", "langgraph")

from langgraph.checkpoint.base import empty_checkpoint  # noqa: E402
from langgraph.checkpoint.base.id import uuid6  # noqa: E402

import tether  # noqa: E402
from tether.integrations import _langgraph_core as core  # noqa: E402
from tether.integrations import _langgraph_marks as marks  # noqa: E402
from tether.integrations.langgraph import TetherSaver  # noqa: E402
from tether.stores.base import Store  # noqa: E402


class _Calls:
    """Counts the writes a saver makes to its store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self.writes.append("commit")
        return self.inner.commit(*args, **kwargs)

    def append(self, *args: Any, **kwargs: Any) -> Any:
        self.writes.append("append")
        return self.inner.append(*args, **kwargs)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgres":
        base = request.getfixturevalue("postgres_url")
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}schema=t_{uuid.uuid4().hex[:12]}"
    else:
        url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'b.db'}"}[request.param]
    with tether.open_store(url) as opened:
        yield opened


def _cfg(thread: str, cid: str | None = None) -> Any:
    configurable = {"thread_id": thread, "checkpoint_ns": ""}
    if cid is not None:
        configurable["checkpoint_id"] = cid
    return {"configurable": configurable}


def _checkpoint(n: int) -> tuple[Any, dict[str, str | int | float]]:
    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6())
    version = f"{n + 1:032}.0"
    checkpoint["channel_values"] = {"messages": [f"m{n}"]}
    checkpoint["channel_versions"] = {"messages": version}
    return checkpoint, {"messages": version}


def _until(what: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not what():
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.001)


def _race(saver: TetherSaver, thread: str, put_writes: Callable[[], Any], put: Callable[[], Any]):
    """Hold the thread's lock while ``put_writes`` and then ``put`` queue for it, in threads of
    their own (as LangGraph's background writes do); let them go; their results."""
    threads = saver._threads
    cond = threads._serial._conds[hash(thread) % len(threads._serial._conds)]
    results: dict[str, Any] = {}

    def run(name: str, call: Callable[[], Any]) -> None:
        results[name] = call()

    with cond:
        writer = threading.Thread(target=run, args=("writes", put_writes))
        writer.start()
        _until(lambda: thread in threads._batches)
        putter = threading.Thread(target=run, args=("put", put))
        putter.start()
        _until(lambda: threads._serial.put_waiting(thread))
    writer.join(10)
    putter.join(10)
    assert set(results) == {"writes", "put"}
    return results


def test_waiting_writes_ride_with_the_put(store: Store) -> None:
    calls = _Calls(store)
    saver = TetherSaver(calls)  # type: ignore[arg-type]
    thread = f"b-{uuid.uuid4().hex[:8]}"
    first, versions = _checkpoint(0)
    parent = saver.put(_cfg(thread), first, {"source": "loop", "step": 0}, versions)
    calls.writes.clear()

    second, versions = _checkpoint(1)
    own = _cfg(thread, second["id"])  # the writes of the checkpoint about to be put
    results = _race(
        saver,
        thread,
        lambda: saver.put_writes(own, [("messages", "w1"), ("next", 1)], "task-1"),
        lambda: saver.put(parent, second, {"source": "loop", "step": 1}, versions),
    )
    assert calls.writes == ["commit"]  # one write for both
    items = store.load(core.session_id(thread)).items
    # the checkpoint, then its writes (after it: no first-write mark, not early)
    tail = [i.key for i in items[-3:]]
    assert tail[0] == core.key("c", "", second["id"])
    assert {i.item["type"] for i in items[-2:]} == {core.WRITE}
    assert items[-3].item["early"] is False
    assert core.MARK not in {i.item["type"] for i in items}
    for reader in (saver, TetherSaver(store)):
        tup = reader.get_tuple(_cfg(thread))
        assert tup is not None
        assert tup.config == results["put"]
        assert [w[1:] for w in tup.pending_writes or []] == [("messages", "w1"), ("next", 1)]
        assert tup.checkpoint["channel_values"] == {"messages": ["m1"]}


def test_a_later_write_marks_a_checkpoint_whose_first_writes_rode_without_one(
    store: Store,
) -> None:
    """The writes a put committed after its checkpoint have no mark; a write made later (a
    resumed task) appends the checkpoint's mark after them: a read by id still starts at
    the checkpoint, not at that mark."""
    saver = TetherSaver(store)
    thread = f"b-{uuid.uuid4().hex[:8]}"
    first, versions = _checkpoint(0)
    parent = saver.put(_cfg(thread), first, {"source": "loop", "step": 0}, versions)
    second, versions = _checkpoint(1)
    own = _cfg(thread, second["id"])
    _race(
        saver,
        thread,
        lambda: saver.put_writes(own, [("__interrupt__", "asked")], "task-a"),
        lambda: saver.put(parent, second, {"source": "loop", "step": 1}, versions),
    )
    saver.put_writes(own, [("messages", "answered")], "task-a")  # later: with a mark
    kinds = [i.item["type"] for i in store.load(core.session_id(thread)).items[-4:]]
    assert kinds == [core.CHECKPOINT, core.WRITE, core.MARK, core.WRITE]
    for reader in (saver, TetherSaver(store)):
        for config in (own, _cfg(thread)):  # by id, and the head
            tup = reader.get_tuple(config)
            assert tup is not None
            assert sorted(w[1:] for w in tup.pending_writes or []) == [
                ("__interrupt__", "asked"),
                ("messages", "answered"),
            ]
        listed = [
            t for t in reader.list(_cfg(thread)) if t.config["configurable"] == own["configurable"]
        ]
        assert [sorted(w[1:] for w in t.pending_writes or []) for t in listed] == [
            [("__interrupt__", "asked"), ("messages", "answered")]
        ]


def test_writes_the_put_cannot_take_land_after_it(store: Store) -> None:
    """Writes whose keys are stored already make the combined commit fail: the put is stored
    alone, then the writes as a put_writes stores them: only what is missing, named by a late
    entry (they land after a newer checkpoint)."""
    calls = _Calls(store)
    saver = TetherSaver(calls)  # type: ignore[arg-type]
    thread = f"b-{uuid.uuid4().hex[:8]}"
    first, versions = _checkpoint(0)
    parent = saver.put(_cfg(thread), first, {"source": "loop", "step": 0}, versions)
    saver.put_writes(parent, [("messages", "w0")], "task-0")
    calls.writes.clear()

    second, versions = _checkpoint(1)
    _race(
        saver,
        thread,
        lambda: saver.put_writes(parent, [("messages", "w0"), ("extra", 2)], "task-0"),
        lambda: saver.put(parent, second, {"source": "loop", "step": 1}, versions),
    )
    assert calls.writes[:2] == ["commit", "commit"]  # refused with the writes, then alone
    assert "append" in calls.writes[2:]
    late = store.items_by_key(
        core.session_id(thread), [core.key("l", "", parent["configurable"]["checkpoint_id"], 0)]
    )
    assert [entry.item["type"] for entry in late.values()] == [core.LATE]
    tup = TetherSaver(store).get_tuple(parent)
    assert tup is not None
    assert [w[1:] for w in tup.pending_writes or []] == [("messages", "w0"), ("extra", 2)]
    head = TetherSaver(store).get_tuple(_cfg(thread))
    assert head is not None
    assert head.checkpoint["id"] == second["id"]


def test_writes_wait_a_moment_for_the_next_put(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that find no put waiting wait (``_GRACE``) for one to come: LangGraph puts a
    step's checkpoint right after it saves the step's writes, so both share one commit; the
    writes return as soon as the put stored them, never after the whole wait."""
    monkeypatch.setattr(marks, "_GRACE", 30.0)
    calls = _Calls(store)
    saver = TetherSaver(calls)  # type: ignore[arg-type]
    thread = f"b-{uuid.uuid4().hex[:8]}"
    first, versions = _checkpoint(0)
    parent = saver.put(_cfg(thread), first, {"source": "input", "step": -1}, versions)
    calls.writes.clear()
    writer = threading.Thread(
        target=lambda: saver.put_writes(parent, [("messages", "w0")], "task-0")
    )
    started = time.monotonic()
    writer.start()
    _until(lambda: thread in saver._threads._batches)
    time.sleep(0.05)  # the writer has the lock, finds no put waiting, and waits for one
    second, versions = _checkpoint(1)
    saver.put(parent, second, {"source": "loop", "step": 0}, versions)
    writer.join(10)
    assert not writer.is_alive()
    assert time.monotonic() - started < 10
    assert calls.writes == ["commit"]  # one write for both, the writes first
    tup = TetherSaver(store).get_tuple(parent)
    assert tup is not None
    assert [w[1:] for w in tup.pending_writes or []] == [("messages", "w0")]


def test_writes_no_put_takes_land_after_the_wait(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(marks, "_GRACE", 0.2)
    calls = _Calls(store)
    saver = TetherSaver(calls)  # type: ignore[arg-type]
    thread = f"b-{uuid.uuid4().hex[:8]}"
    first, versions = _checkpoint(0)
    parent = saver.put(_cfg(thread), first, {"source": "input", "step": -1}, versions)
    calls.writes.clear()
    started = time.monotonic()
    saver.put_writes(parent, [("messages", "w0")], "task-0")
    assert time.monotonic() - started >= 0.2
    assert calls.writes == ["append"]
    assert thread not in saver._threads._batches  # no offer left for a later put
    tup = TetherSaver(store).get_tuple(parent)
    assert tup is not None
    assert [w[1:] for w in tup.pending_writes or []] == [("messages", "w0")]


def test_two_waits_no_put_ended_stop_the_waits_for_a_while(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph whose puts wait for its writes (LangGraph's delta channels) never has a put
    come while its writes wait: after two such waits the thread's writes stop waiting, and
    one waits again every ``_RETRY`` writes."""
    monkeypatch.setattr(marks, "_GRACE", 0.2)
    monkeypatch.setattr(marks, "_RETRY", 4)
    saver = TetherSaver(store)
    thread = f"b-{uuid.uuid4().hex[:8]}"
    first, versions = _checkpoint(0)
    parent = saver.put(_cfg(thread), first, {"source": "input", "step": -1}, versions)
    took: list[bool] = []
    for n in range(8):
        started = time.monotonic()
        saver.put_writes(parent, [("messages", f"w{n}")], f"task-{n}")
        took.append(time.monotonic() - started >= 0.2)
    assert took == [True, True, False, False, False, True, False, False]
    tup = saver.get_tuple(parent)
    assert tup is not None
    assert len(tup.pending_writes or []) == 8
