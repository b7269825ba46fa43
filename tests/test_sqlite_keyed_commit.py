"""SQLite's keyed commits (issues 13 and 18): a duplicate key is refused by the primary key
of tether_item_keys rather than by a read before every write, and a commit runs one INSERT
statement per table (one executemany), no per-row subquery and no read of the keys.

These check what the conformance suite does not pin down: which key the refusal names when
the held key follows new ones in the write (the new ones were already inserted when the
primary key refused), that such a refusal leaves nothing behind, and the statements a commit
runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tether import DuplicateItemKey, KeyedItem, Session
from tether._time import system_clock, to_micros
from tether.errors import StoreError
from tether.stores.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "keys.db")
    yield store
    store.close()


def _refused(store: SQLiteStore, session_id: str, version: int, items: list[object]) -> str:
    """The key a refused commit names; the refusal is the one the other stores raise."""
    with pytest.raises(DuplicateItemKey) as refused:
        store.commit(session_id, version, append=items)  # type: ignore[arg-type]
    assert refused.value.session_id == session_id
    assert str(refused.value) == str(DuplicateItemKey(session_id, refused.value.key))
    return refused.value.key


def test_the_first_held_key_in_write_order_is_named(store: SQLiteStore) -> None:
    created = store.create(Session())
    version = store.commit(
        created.id, 1, append=[KeyedItem("a", {"n": 1}), KeyedItem("b", {"n": 2})]
    )
    before = store.load(created.id)
    # "x" and "y" are new and inserted before "b" is refused; "a" (held too) comes later
    items: list[object] = [
        KeyedItem("x", {}),
        {"plain": True},
        KeyedItem("y", {}),
        KeyedItem("b", {}),
        KeyedItem("a", {}),
    ]
    assert _refused(store, created.id, version, items) == "b"
    assert _refused(store, created.id, version, [KeyedItem("z", {}), KeyedItem("a", {})]) == "a"
    # nothing was written: not the rows, not the new keys, not the header
    assert store.load(created.id) == before
    assert store.items_by_key(created.id, ["x", "y", "z"]) == {}
    version = store.commit(created.id, version, append=[KeyedItem("x", {"now": 1})])
    found = store.items_by_key(created.id, ["x", "a", "b"])
    assert {key: entry.seq for key, entry in found.items()} == {"a": 1, "b": 2, "x": 3}


def test_a_blind_append_is_refused_the_same_way(store: SQLiteStore) -> None:
    created = store.create(Session(history=[{"role": "user"}]))
    store.append(created.id, [KeyedItem("k", {})])
    before = store.load(created.id)
    with pytest.raises(DuplicateItemKey) as refused:
        store.append(created.id, [KeyedItem("new", {}), KeyedItem("k", {})])
    assert (refused.value.session_id, refused.value.key) == (created.id, "k")
    assert store.load(created.id) == before
    assert store.items_by_key(created.id, ["new"]) == {}


def test_replace_tail_frees_the_replaced_keys_and_keeps_the_rest(store: SQLiteStore) -> None:
    created = store.create(Session())
    version = store.commit(
        created.id, 1, append=[KeyedItem(key, {"old": key}) for key in ("a", "b", "c", "d")]
    )
    # the tail after seq 2 ("c", "d") goes: its keys are free again, "a" and "b" are kept
    with pytest.raises(DuplicateItemKey) as refused:
        store.replace_tail(
            created.id, version, 2, [KeyedItem("d", {}), KeyedItem("c", {}), KeyedItem("b", {})]
        )
    assert refused.value.key == "b"
    version = store.replace_tail(
        created.id, version, 2, [KeyedItem("d", {"new": 1}), KeyedItem("c", {"new": 2})]
    )
    found = store.items_by_key(created.id, ["a", "b", "c", "d"])
    assert {key: (entry.seq, entry.item) for key, entry in found.items()} == {
        "a": (1, {"old": "a"}),
        "b": (2, {"old": "b"}),
        "d": (3, {"new": 1}),
        "c": (4, {"new": 2}),
    }
    # replace_history frees every key
    version = store.replace_history(created.id, version, [KeyedItem("a", {"last": True})])
    assert set(store.items_by_key(created.id, ["a", "b", "c", "d"])) == {"a"}
    assert _refused(store, created.id, version, [KeyedItem("b", {}), KeyedItem("a", {})]) == "a"


def test_a_fork_holds_its_parents_keys_below_the_fork_point(store: SQLiteStore) -> None:
    parent = store.create(Session())
    store.commit(parent.id, 1, append=[KeyedItem("p1", {}), KeyedItem("p2", {})])
    store.fork_session(Session(id="child", parent_id=parent.id), 1)
    assert _refused(store, "child", 1, [KeyedItem("p2", {}), KeyedItem("p1", {})]) == "p1"
    store.commit("child", 1, append=[KeyedItem("p2", {"mine": True})])
    assert store.items_by_key("child", ["p2"])["p2"].item == {"mine": True}


def test_a_commit_runs_one_insert_per_table_and_reads_no_keys(store: SQLiteStore) -> None:
    created = store.create(Session())
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        store.commit(created.id, 1, append=[KeyedItem("a", {}), {"n": 1}, KeyedItem("b", {})])
    finally:
        store._conn.set_trace_callback(None)
    # executemany traces each row's run of its one statement
    shapes = [" ".join(sql.split()[:3]) for sql in statements]
    assert shapes == [
        "BEGIN IMMEDIATE",
        "SELECT id, version,",
        *["INSERT INTO tether_item_keys"] * 2,
        *["INSERT INTO tether_items"] * 3,
        "UPDATE tether_sessions SET",
        "COMMIT",
    ]
    assert not any("SELECT num" in sql for sql in statements)  # k is computed, not looked up
    loaded = store.load(created.id)
    assert [entry.key for entry in loaded.items] == ["a", None, "b"]


def _update_then(store: SQLiteStore, then: str | None) -> None:
    """A write that moves every version to 99, then fails: ``then`` a bad statement, or None
    for an error of the body's own."""
    with store._write() as conn:
        conn.execute("UPDATE tether_sessions SET version = 99")
        if then is None:
            raise RuntimeError("the body's own error goes on as it was")
        conn.execute(then)


def _begin(store: SQLiteStore, begin: str) -> None:
    with store._transaction(begin, "read"):
        pass


def test_a_failed_transaction_rolls_back_and_lets_go_of_the_lock(store: SQLiteStore) -> None:
    created = store.create(Session())
    with pytest.raises(RuntimeError, match="the body's own"):
        _update_then(store, None)
    with pytest.raises(StoreError, match="SQLite write"):
        _update_then(store, "SELECT * FROM no_such_table")
    with pytest.raises(StoreError, match="SQLite read"):
        _begin(store, "BEGIN NONSENSE")
    assert store.load(created.id).version == 1  # both bodies' updates were rolled back
    # the lock was let go each time: another thread writes
    writer = threading.Thread(target=lambda: store.commit(created.id, 1, append=[{"n": 1}]))
    writer.start()
    writer.join(10)
    assert store.load(created.id).version == 2


def test_the_system_clocks_time_is_the_datetimes(store: SQLiteStore) -> None:
    # _now reads the system clock without a datetime: the same microseconds as the clock's
    for _ in range(1000):
        before = to_micros(system_clock())
        now = store._now()
        assert before <= now <= to_micros(system_clock())
    moment = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    faked = SQLiteStore(store.path, clock=lambda: moment)
    try:
        assert faked._now() == to_micros(moment)  # any other clock is asked
    finally:
        faked.close()
