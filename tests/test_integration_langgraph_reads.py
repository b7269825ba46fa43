"""What TetherSaver reads: ``get_tuple`` (head or an old id) and a first ``list`` page read the
same items at 10 and 10,000 checkpoints (counted, not timed), and the paged reads give exactly
what the whole-thread sort gives, with writes stored late (time travel), early (``put_writes``
before ``put``), re-put checkpoints, subgraph namespaces and checkpoints put out of order."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import require_module

require_module("langgraph", "langgraph")

from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint  # noqa: E402
from langgraph.checkpoint.base.id import uuid6  # noqa: E402

import tether  # noqa: E402
from tether.integrations import _langgraph_core as core  # noqa: E402
from tether.integrations.langgraph import AsyncTetherSaver, TetherSaver  # noqa: E402
from tether.models import Session, SessionHeader  # noqa: E402
from tether.stores.base import Store  # noqa: E402


class _Counting:
    """Counts the items the store hands back: through ``load`` and ``items_by_key``."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.loaded = 0
        self.keyed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load(self, *args: Any, **kwargs: Any) -> Any:
        session = self.inner.load(*args, **kwargs)
        self.loaded += len(session.items)
        return session

    def items_by_key(self, *args: Any, **kwargs: Any) -> Any:
        found = self.inner.items_by_key(*args, **kwargs)
        self.keyed += len(found)
        return found


def _cfg(thread: str, cid: str | None = None, ns: str = "") -> Any:
    configurable = {"thread_id": thread, "checkpoint_ns": ns}
    if cid is not None:
        configurable["checkpoint_id"] = cid
    return {"configurable": configurable}


def _step(saver: TetherSaver, thread: str, parent: Any, n: int, ns: str = "") -> Any:
    """One checkpoint (a changed channel, a channel left as it was) and its two writes."""
    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6())
    version = f"{n + 1:032}.0"
    checkpoint["channel_values"] = {"messages": [f"m{n}"], "config": {"fixed": True}}
    checkpoint["channel_versions"] = {"messages": version, "config": f"{1:032}.0"}
    new_versions: dict[str, str | int | float] = {"messages": version}
    if n == 0:
        new_versions["config"] = f"{1:032}.0"
    base = parent if parent is not None else _cfg(thread, ns=ns)
    stored = saver.put(base, checkpoint, {"source": "loop", "step": n}, new_versions)
    saver.put_writes(stored, [("messages", f"w{n}"), ("next", n)], f"task-{n}")
    return stored


def _grow(saver: TetherSaver, thread: str, count: int) -> list[Any]:
    configs: list[Any] = []
    parent = None
    for n in range(count):
        parent = _step(saver, thread, parent, n)
        configs.append(parent)
    return configs


def _costs(store: Store, thread: str, old: Any) -> dict[str, tuple[int, int]]:
    counting = _Counting(store)
    saver = TetherSaver(counting)  # type: ignore[arg-type]
    costs: dict[str, tuple[int, int]] = {}

    def measure(name: str, call: Any) -> Any:
        counting.loaded = counting.keyed = 0
        result = call()
        costs[name] = (counting.loaded, counting.keyed)
        return result

    head = measure("get_tuple(head)", lambda: saver.get_tuple(_cfg(thread)))
    assert head is not None
    assert head.pending_writes
    by_id = measure("get_tuple(old)", lambda: saver.get_tuple(old))
    assert by_id is not None
    assert [w[1:] for w in by_id.pending_writes or []] == [("messages", "w2"), ("next", 2)]
    assert by_id.checkpoint["channel_values"] == {"messages": ["m2"], "config": {"fixed": True}}
    page = measure("list(limit=10)", lambda: list(saver.list(_cfg(thread), limit=10)))
    assert len(page) == 10
    assert page[0].checkpoint["id"] == head.checkpoint["id"]
    assert all(t.pending_writes for t in page)
    return costs


@pytest.mark.heavy
def test_reads_do_not_grow_with_the_thread() -> None:
    """Items handed back by the store for get_tuple(head), get_tuple(an old id) and a first
    list page of 10, at 10, 1,000 and 10,000 checkpoints: the same at 1,000 and 10,000, no
    more at 10,000 than a fixed few pages (a scan would read 50,000 items)."""
    with tether.open_store("memory://") as store:
        saver = TetherSaver(store)
        measured = {}
        for count in (10, 1_000, 10_000):
            configs = _grow(saver, f"t{count}", count)
            measured[count] = _costs(store, f"t{count}", configs[2])
    for name in measured[10]:
        small, mid, large = (measured[n][name] for n in (10, 1_000, 10_000))
        assert mid == large, (name, measured)
        assert small[0] <= large[0], (name, measured)
        assert small[1] <= large[1], (name, measured)
        assert sum(large) < 200, (name, measured)


def _forced_sort(store: Store, thread: str) -> None:
    """Clear the thread's order flags: its list then takes the whole-thread sort."""
    sid = core.session_id(thread)
    header = store.load(sid, last=0)
    state = dict(header.state)
    state[core.STATE_KEY] = {
        **state[core.STATE_KEY],
        "order": {"unordered": [""], "mixed": True},
    }
    store.commit(sid, header.version, changes={"state": state})


def _view(tuples: list[CheckpointTuple]) -> list[Any]:
    return [
        (
            t.config,
            t.parent_config,
            t.checkpoint["channel_values"],
            t.metadata,
            t.pending_writes,
        )
        for t in tuples
    ]


def _listings(saver: TetherSaver, thread: str, ids: list[str]) -> list[Any]:
    out = [_view(list(saver.list(_cfg(thread))))]
    out.append(_view(list(saver.list({"configurable": {"thread_id": thread}}))))
    out.append(_view(list(saver.list(_cfg(thread), limit=3))))
    out.append(_view(list(saver.list(_cfg(thread), filter={"step": 3}))))
    for cid in ids:
        out.append(_view(list(saver.list(_cfg(thread), before=_cfg(thread, cid), limit=2))))
        out.append(_view(list(saver.list(_cfg(thread, cid)))))
        tup = saver.get_tuple(_cfg(thread, cid))
        out.append(_view([tup] if tup is not None else []))
    return out


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_paged_reads_equal_the_whole_thread_sort(kind: str, tmp_path: Path) -> None:
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 's.db'}"
    with tether.open_store(url) as store:
        saver = TetherSaver(store)
        thread = "paged"
        configs = _grow(saver, thread, 12)
        ids = [c["configurable"]["checkpoint_id"] for c in configs]
        # writes stored before their checkpoint
        early = empty_checkpoint()
        early["id"] = str(uuid6())
        saver.put_writes(_cfg(thread, early["id"]), [("early", 1)], "task-e")
        configs.append(saver.put(configs[-1], early, {"source": "loop", "step": 12}, {}))
        ids.append(early["id"])
        # the head put again
        again: Any = {"source": "loop", "step": 12, "again": True}
        saver.put(configs[-2], early, again, {})
        # a subgraph namespace
        _step(saver, thread, None, 0, ns="child:1")
        # late writes to old checkpoints: by this saver, by another one (no shared memory),
        # and special writes (upserts: the newest wins)
        saver.put_writes(configs[1], [("late", "a")], "task-late")
        TetherSaver(store).put_writes(configs[4], [("late", "b")], "task-late")
        TetherSaver(store).put_writes(configs[4], [("__error__", "first")], "task-x")
        TetherSaver(store).put_writes(configs[4], [("__error__", "second")], "task-x")
        # and more checkpoints after them
        for n in range(13, 16):
            configs.append(_step(saver, thread, configs[-1], n))
            ids.append(configs[-1]["configurable"]["checkpoint_id"])

        tup = saver.get_tuple(configs[4])
        assert tup is not None
        writes = [w[1:] for w in tup.pending_writes or []]
        assert ("late", "b") in writes
        assert ("__error__", "second") in writes
        assert ("__error__", "first") not in writes
        tup = saver.get_tuple(_cfg(thread, early["id"]))
        assert tup is not None
        assert tup.metadata.get("again") is True
        assert [w[1:] for w in tup.pending_writes or []] == [("early", 1)]

        items = store.load(core.session_id(thread)).items
        late = [s.item for s in items if s.item.get("type") == core.LATE]
        assert {(e["checkpoint"], len(e["keys"])) for e in late} == {
            (ids[1], 1),
            (ids[4], 1),
        }
        assert len(late) == 4
        assert core.order_of(store.load(core.session_id(thread), last=0)) == ([], False)
        paged = _listings(saver, thread, ids)
        _forced_sort(store, thread)
        assert _listings(saver, thread, ids) == paged


def test_checkpoints_put_out_of_order_set_the_flags_and_list_sorts() -> None:
    with tether.open_store("memory://") as store:
        saver = TetherSaver(store)
        configs = _grow(saver, "tt", 3)
        sid = core.session_id("tt")
        assert core.order_of(store.load(sid, last=0)) == ([], False)
        older = empty_checkpoint()
        older["id"] = configs[1]["configurable"]["checkpoint_id"][:-1] + "0"
        saver.put(configs[0], older, {"source": "fork"}, {})
        assert core.order_of(store.load(sid, last=0)) == ([""], True)
        ids = [t.checkpoint["id"] for t in saver.list(_cfg("tt"))]
        assert ids == sorted(ids, reverse=True)
        assert older["id"] in ids


def test_a_thread_without_order_flags_is_listed_by_the_sort() -> None:
    """A thread stored before the flags existed (no ``order``) is listed exactly."""
    with tether.open_store("memory://") as store:
        saver = TetherSaver(store)
        configs = _grow(saver, "old", 4)
        sid = core.session_id("old")
        header = store.load(sid, last=0)
        state = {core.STATE_KEY: {"heads": core.heads_of(header)}}
        store.commit(sid, header.version, changes={"state": state})
        assert core.order_of(store.load(sid, last=0)) is None
        ids = [t.checkpoint["id"] for t in saver.list(_cfg("old"))]
        assert ids == [c["configurable"]["checkpoint_id"] for c in reversed(configs)]


async def test_async_list_pages_as_consumed() -> None:
    async with tether.open_async_store("memory://") as astore:
        saver = AsyncTetherSaver(astore)
        parent: Any = _cfg("a")
        for n in range(5):
            checkpoint = empty_checkpoint()
            checkpoint["id"] = str(uuid6())
            parent = await saver.aput(parent, checkpoint, {"step": n}, {})
            await saver.aput_writes(parent, [("w", n)], f"task-{uuid.uuid4()}")
        seen = [t.metadata["step"] async for t in saver.alist(_cfg("a"), limit=3)]
        assert seen == [4, 3, 2]
        before = [t.metadata["step"] async for t in saver.alist(_cfg("a"), before=parent)]
        assert before == [3, 2, 1, 0]


def test_delta_history_equals_the_default_walk() -> None:
    """get_delta_channel_history gives what LangGraph's default walk (get_tuple up the parent
    chain) gives: a channel seeded a step back, and one never seeded (a walk to the root,
    past the keyed steps, over one read of the thread)."""
    from langgraph.checkpoint.base import BaseCheckpointSaver

    with tether.open_store("memory://") as store:
        saver = TetherSaver(store)
        configs = _grow(saver, "d", 40)
        for cfg in configs:
            saver.put_writes(cfg, [("only_writes", cfg["configurable"]["checkpoint_id"])], "t-d")
        channels = ["messages", "next", "only_writes", "config"]
        for target in (configs[-1], configs[20], configs[3], _cfg("d")):
            ours = saver.get_delta_channel_history(config=target, channels=channels)
            default = BaseCheckpointSaver.get_delta_channel_history(
                saver, config=target, channels=channels
            )
            assert ours == default
        assert len(ours["only_writes"]["writes"]) == 39
        assert "seed" not in ours["only_writes"]


class _Calls:
    """Counts the calls a saver makes to its store, by method."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return call


class _LateMarks(core.Marks):
    """Says a checkpoint's mark is unknown until its put has checked, then known: what a
    write by the saver's other face, begun during the put, looks like."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[tuple[str, str, str]] = set()

    def has(self, thread_id: str, ns: str, cid: str) -> bool:
        if (thread_id, ns, cid) not in self.asked:
            self.asked.add((thread_id, ns, cid))
            return False
        return True


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_the_head_is_one_read_and_early_writes_are_never_missed(
    kind: str, tmp_path: Path, postgres_url: str
) -> None:
    """A head whose put came before its writes is read in one ``load`` and no keyed read; one
    with writes stored before it (far before: outside the newest items) is flagged, and read
    by key with them; a flag a parallel write may have outdated is noted after the checkpoint
    and read by key too. Late writes to an older checkpoint by the saver that knows it is late
    are one append, their late entry in it (a second one takes the next index)."""
    urls = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'h.db'}"}
    url = (
        urls.get(kind)
        or f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema=t_{uuid.uuid4().hex[:12]}"
    )
    with tether.open_store(url) as store:
        saver = TetherSaver(store)
        thread = f"head-{uuid.uuid4().hex[:8]}"
        configs = _grow(saver, thread, 4)

        calls = _Calls(store)
        fresh = TetherSaver(calls)  # type: ignore[arg-type]
        head = fresh.get_tuple(_cfg(thread))
        assert head is not None
        assert head.config == configs[-1]
        assert [w[1:] for w in head.pending_writes or []] == [("messages", "w3"), ("next", 3)]
        # a channel value older than the newest 16 items (step 0's): read by key, once; the
        # window then reaches it
        assert calls.calls == {"load": 1, "items_by_key": 1}
        calls.calls.clear()
        again = fresh.get_tuple(_cfg(thread))
        assert again == head
        assert calls.calls == {"load": 1}

        # writes first, then many items, then their checkpoint: the mark is outside the window
        early = empty_checkpoint()
        early["id"] = str(uuid6())
        saver.put_writes(_cfg(thread, early["id"]), [("early", 1)], "task-e")
        saver.put_writes(configs[-1], [(f"pad{i}", i) for i in range(40)], "task-pad")
        configs.append(saver.put(configs[-1], early, {"source": "loop", "step": 4}, {}))
        items = store.load(core.session_id(thread)).items
        assert items[-1].item["early"] is True
        for reader in (saver, TetherSaver(store)):
            tup = reader.get_tuple(_cfg(thread))
            assert tup is not None
            assert tup.config == configs[-1]
            assert [w[1:] for w in tup.pending_writes or []] == [("early", 1)]

        # a put whose flag a parallel write may have outdated: noted, and read by key
        racy = TetherSaver(store)
        racy._threads.marks = _LateMarks()
        noted = empty_checkpoint()
        noted["id"] = str(uuid6())
        saver.put_writes(_cfg(thread, noted["id"]), [("noted", 1)], "task-n")
        saver.put_writes(configs[-1], [(f"pad{i}", i) for i in range(40)], "task-pad2")
        configs.append(racy.put(configs[-1], noted, {"source": "loop", "step": 5}, {}))
        items = store.load(core.session_id(thread)).items
        assert items[-1].key == core.key("e", "", noted["id"])
        assert items[-2].item["early"] is False
        tup = TetherSaver(store).get_tuple(_cfg(thread))
        assert tup is not None
        assert [w[1:] for w in tup.pending_writes or []] == [("noted", 1)]

        # late writes, known late from the cached header: the first to a checkpoint is one
        # append, its late entry in it; a second to it reads the keys (the mark is there) and
        # takes the next free late index, still in one append
        bare = empty_checkpoint()
        bare["id"] = str(uuid6())
        bare_config = saver.put(configs[-1], bare, {"source": "loop", "step": 6}, {})
        newer = empty_checkpoint()
        newer["id"] = str(uuid6())
        configs.append(saver.put(bare_config, newer, {"source": "loop", "step": 7}, {}))
        fresh.get_tuple(_cfg(thread))  # the cached header now has the head
        calls.calls.clear()
        fresh.put_writes(bare_config, [("late", "a")], "task-late-1")
        assert calls.calls == {"append": 1}
        calls.calls.clear()
        fresh.put_writes(bare_config, [("late", "b")], "task-late-2")
        assert calls.calls == {"append": 2, "items_by_key": 1}
        sid = core.session_id(thread)
        entries = [s for s in store.load(sid).items if s.item.get("type") == core.LATE]
        assert sorted(s.key or "" for s in entries) == [
            core.key("l", "", bare["id"], 0),
            core.key("l", "", bare["id"], 1),
        ]
        for reader in (fresh, TetherSaver(store)):
            tup = reader.get_tuple(bare_config)
            assert tup is not None
            assert sorted(w[1:] for w in tup.pending_writes or []) == [("late", "a"), ("late", "b")]
            head = reader.get_tuple(_cfg(thread))
            assert head is not None
            assert head.config == configs[-1]
            assert not head.pending_writes


def test_the_cached_header_is_the_loaded_one_without_its_items(tmp_path: Path) -> None:
    """``header_only`` (what a head read caches): every header field as loaded, no items, the
    private state a fresh ``Session`` has (no rows or views of the items kept alive)."""
    with tether.open_store(f"sqlite:///{tmp_path / 'cached.db'}") as store:
        saver = TetherSaver(store)
        configs = _grow(saver, "cached", 3)
        window = store.load(core.session_id("cached"), last=8)
        assert window.history
        cached = core.header_only(window)
        expected = Session.model_construct(
            history=[], **{name: getattr(window, name) for name in SessionHeader.model_fields}
        )
        assert cached.history == []
        assert cached.model_dump() == expected.model_dump()
        assert cached.model_fields_set == expected.model_fields_set
        assert cached.__pydantic_private__ == expected.__pydantic_private__
        assert cached == expected
        assert saver.get_tuple(configs[-1]) is not None
