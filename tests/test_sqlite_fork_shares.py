"""SQLite forks share their parent's rows: O(1) forks that never lose an item.

A fork records which of its seqs are another session's rows (tether_item_shares) instead of
copying them. These tests check that sharing is real (no rows copied), and that no sequence of
writes, rewrites, deletions and expiries on parents, forks and forks of forks ever changes what
any session loads: a randomized run compares every load with the memory store, which copies.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tether import Session
from tether.errors import SessionNotFound
from tether.stores._sqlite_sql import MAX_SHARES as _MAX_SHARES
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore
from tether.testing import FakeClock


def _msgs(n: int, tag: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{tag}{i}"} for i in range(n)]


def _fork(store: SQLiteStore | MemoryStore, parent: str, at: int, child: str) -> None:
    store.fork_session(Session(id=child, parent_id=parent), at)


def _contents(store: SQLiteStore | MemoryStore, sid: str, **window: int) -> list[tuple[int, str]]:
    return [(item["seq"], item["content"]) for item in store.load(sid, **window).history]


def _rows(path: Path, table: str, session_id: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(
            conn.execute(
                f"SELECT count(*) FROM {table} WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
        )
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "forks.db"


def test_a_fork_copies_no_rows_and_loads_its_parents_items(db: Path) -> None:
    store = SQLiteStore(db)
    store.create(Session(id="parent", history=_msgs(1000)))
    _fork(store, "parent", 600, "child")
    assert _rows(db, "tether_items", "child") == 0
    assert _rows(db, "tether_item_shares", "child") == 1
    child = store.load("child")
    assert (child.parent_id, child.fork_seq, child.last_seq, child.history_len) == (
        "parent",
        600,
        600,
        600,
    )
    assert child.history == store.load("parent").history[:600]
    # windows read across the share and the fork's own rows
    store.commit("child", child.version, append=_msgs(3, "c"))
    assert _contents(store, "child", last=4) == [
        (600, "m599"),
        (601, "c0"),
        (602, "c1"),
        (603, "c2"),
    ]
    assert _contents(store, "child", after=598) == [
        (599, "m598"),
        (600, "m599"),
        (601, "c0"),
        (602, "c1"),
        (603, "c2"),
    ]
    assert _contents(store, "child", after=603) == []
    # the parent's later writes stay invisible to the fork, and the fork's to the parent
    store.commit("parent", 1, append=_msgs(1, "p"))
    assert _contents(store, "child")[-1] == (603, "c2")
    assert _contents(store, "parent")[-1] == (1001, "p0")


def test_rewriting_or_deleting_the_parent_keeps_every_fork_whole(db: Path) -> None:
    store = SQLiteStore(db)
    store.create(Session(id="root", history=_msgs(50)))
    _fork(store, "root", 40, "mid")
    store.commit("mid", 1, append=_msgs(5, "mid"))
    _fork(store, "mid", 43, "leaf")  # its shares point at root (1..40) and mid (41..43)
    before = {sid: store.load(sid).history for sid in ("mid", "leaf")}
    assert _rows(db, "tether_item_shares", "leaf") == 2

    store.replace_history("root", 1, _msgs(2, "summary"))
    assert {sid: store.load(sid).history for sid in ("mid", "leaf")} == before
    assert _rows(db, "tether_items", "mid") == 45  # materialized: 40 from root, 5 its own
    assert store.delete("mid")
    assert store.load("leaf").history == before["leaf"]
    assert _rows(db, "tether_item_shares", "leaf") == 0
    assert _rows(db, "tether_items", "leaf") == 43


def test_an_expired_parent_purged_keeps_its_forks(db: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(db, clock=clock)
    store.create(
        Session(id="parent", history=_msgs(20), expires_at=clock() + timedelta(seconds=60))
    )
    _fork(store, "parent", 20, "child")
    clock.advance(61)
    assert store.purge_expired() == 1
    with pytest.raises(SessionNotFound):
        store.load("parent")
    assert _contents(store, "child")[-1] == (20, "m19")


def test_an_expired_id_reused_by_a_new_session_keeps_the_forks_of_the_old_one(db: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(db, clock=clock)
    store.create(Session(id="s", history=_msgs(10), expires_at=clock() + timedelta(seconds=60)))
    _fork(store, "s", 10, "fork")
    clock.advance(61)
    store.create(Session(id="s", history=_msgs(1, "new")))  # frees the expired id first
    assert _contents(store, "fork") == [(i + 1, f"m{i}") for i in range(10)]
    assert _contents(store, "s") == [(1, "new0")]


def test_a_fork_of_a_compacted_parent_is_copied_and_renumbered(db: Path) -> None:
    store = SQLiteStore(db)
    store.create(Session(id="parent", history=_msgs(10)))
    store.replace_history("parent", 1, _msgs(4, "kept"))  # seqs 11..14
    _fork(store, "parent", 13, "child")
    assert _rows(db, "tether_item_shares", "child") == 0
    assert _contents(store, "child") == [(1, "kept0"), (2, "kept1"), (3, "kept2")]


def test_a_long_chain_of_forks_stops_sharing_and_copies(db: Path) -> None:
    store = SQLiteStore(db)
    store.create(Session(id="f0", history=_msgs(2)))
    expected = _contents(store, "f0")
    for k in range(1, _MAX_SHARES + 3):
        _fork(store, f"f{k - 1}", expected[-1][0], f"f{k}")
        store.commit(f"f{k}", 1, append=[{"role": "user", "content": f"f{k}"}])
        expected.append((expected[-1][0] + 1, f"f{k}"))
        assert _rows(db, "tether_item_shares", f"f{k}") <= _MAX_SHARES
    copied, last = f"f{_MAX_SHARES + 1}", f"f{_MAX_SHARES + 2}"
    # the fork whose parent reached the limit copied every item (and owns its commit) ...
    assert _rows(db, "tether_item_shares", copied) == 0
    assert _rows(db, "tether_items", copied) == len(expected) - 1
    # ... and its own forks share again, from it alone
    assert _rows(db, "tether_item_shares", last) == 1
    assert _contents(store, last) == expected


def test_fork_at_zero_and_at_the_end(db: Path) -> None:
    store = SQLiteStore(db)
    store.create(Session(id="p", history=_msgs(3)))
    _fork(store, "p", 0, "empty")
    _fork(store, "p", 3, "whole")
    assert _contents(store, "empty") == []
    assert _rows(db, "tether_item_shares", "empty") == 0
    assert _contents(store, "whole") == _contents(store, "p")


@pytest.mark.parametrize("seed", range(12))
def test_random_forks_writes_rewrites_and_deletes_match_a_copying_store(
    db: Path, seed: int
) -> None:
    """Every session loads exactly what the memory store (which copies) loads, after every step."""
    rng = random.Random(seed)
    sqlite_store, memory = SQLiteStore(db), MemoryStore()
    stores = (sqlite_store, memory)
    live: list[str] = []
    counter = 0

    def new_id() -> str:
        nonlocal counter
        counter += 1
        return f"s{counter}"

    first_history = _msgs(rng.randrange(0, 30))
    for store in stores:
        store.create(Session(id="s0", history=first_history))
    live.append("s0")
    for step in range(120):
        op = rng.choice(["fork", "fork", "fork", "append", "append", "replace", "delete"])
        if not live:
            sid = new_id()
            history = _msgs(rng.randrange(1, 20), sid)
            for store in stores:
                store.create(Session(id=sid, history=history))
            live.append(sid)
            continue
        sid = rng.choice(live)
        header = memory.load(sid)
        if op == "fork":
            first = header.last_seq - header.history_len
            at = rng.randint(first, header.last_seq)
            child = new_id()
            for store in stores:
                _fork(store, sid, at, child)
            live.append(child)
        elif op == "append":
            items = _msgs(rng.randrange(1, 4), f"{sid}.{step}.")
            for store in stores:
                store.commit(sid, header.version, append=items)
        elif op == "replace":
            items = _msgs(rng.randrange(0, 3), f"{sid}.r{step}.")
            for store in stores:
                store.replace_history(sid, header.version, items)
        else:
            for store in stores:
                assert store.delete(sid)
            live.remove(sid)
        for other in live:
            assert _contents(sqlite_store, other) == _contents(memory, other), (seed, step, other)
            last = rng.randrange(0, 5)
            assert _contents(sqlite_store, other, last=last) == _contents(memory, other, last=last)
    sqlite_store.close()
    # no share is left pointing at a session that is gone
    conn = sqlite3.connect(db)
    dangling = conn.execute(
        "SELECT count(*) FROM tether_item_shares WHERE source_id NOT IN "
        "(SELECT id FROM tether_sessions)"
    ).fetchone()[0]
    conn.close()
    assert dangling == 0
