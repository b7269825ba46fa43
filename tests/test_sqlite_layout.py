"""The SQLite store's layout since migration 6: item rows keyed by one integer
(``k = (num << 32) + seq``), and a database stored in the previous layout (migration 5) read,
written, forked and deleted the same after the migration."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import KeyedItem, Session
from tether.stores import _migration_runner as runner
from tether.stores._sqlite_migrations import MIGRATIONS, SQLiteMigrator
from tether.stores.sqlite import SQLiteStore

PREVIOUS = 5  # the layout before item rows were keyed by k


def _items(count: int, tag: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{tag} {i}"} for i in range(count)]


def _fill(store: SQLiteStore) -> None:
    """Sessions of every kind a layout holds: keyed items, metadata, a fork sharing rows, a fork
    of a fork, a compacted history and a fork of it (renumbered rows)."""
    store.create(Session(id="a", owner="ann", metadata={"team": "blue"}, history=_items(20, "a")))
    store.commit("a", 1, append=[KeyedItem("k1", {"role": "tool", "content": "one"})])
    store.commit("a", 2, append=[*_items(8, "a2"), KeyedItem("k2", {"role": "tool"})])
    store.fork_session(Session(id="b", parent_id="a"), 25)
    store.commit("b", 1, append=_items(4, "b"))
    store.fork_session(Session(id="c", parent_id="b"), 27)
    store.create(Session(id="d", status="finished", history=_items(12, "d")))
    store.replace_history("d", 1, _items(5, "d2"))
    store.fork_session(Session(id="e", parent_id="d"), 15)


def _snapshot(store: SQLiteStore) -> dict[str, Any]:
    return {
        sid: (s.version, s.last_seq, s.history_len, s.history, s.items, s.metadata, s.status)
        for sid in "abcde"
        for s in [store.load(sid)]
    }


@contextmanager
def _raw(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


def _previous_layout(path: Path, source: Path) -> None:
    """A database migrated to PREVIOUS only, holding ``source``'s rows in that layout."""
    with _raw(path) as conn:

        @contextmanager
        def write() -> Iterator[sqlite3.Connection]:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")

        runner.migrate(SQLiteMigrator(conn, str(path), write, lambda: 0, MIGRATIONS[:PREVIOUS]))
        conn.execute("ATTACH DATABASE ? AS new", (str(source),))
        columns = [row[1] for row in conn.execute("PRAGMA main.table_info(tether_sessions)")]
        assert "num" not in columns
        names = ", ".join(columns)
        conn.execute("BEGIN")
        conn.execute(
            f"INSERT INTO tether_sessions ({names}) SELECT {names} FROM new.tether_sessions"
        )
        conn.execute(
            "INSERT INTO tether_items (session_id, seq, data) "
            "SELECT session_id, seq, data FROM new.tether_items"
        )
        for table in ("tether_item_shares", "tether_item_keys", "tether_session_meta"):
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM new.{table}")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE new")


def test_a_database_in_the_previous_layout_reads_and_writes_the_same(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "current.db") as current:
        _fill(current)
        expected = _snapshot(current)
    old = tmp_path / "old.db"
    _previous_layout(old, tmp_path / "current.db")
    with _raw(old) as conn:  # really the old layout: (session_id, seq) keyed, its index
        assert conn.execute("PRAGMA index_list(tether_items)").fetchall()
        assert conn.execute("SELECT count(*) FROM tether_item_shares").fetchone()[0] >= 2

    with SQLiteStore(old) as store:
        assert _snapshot(store) == expected
        assert set(store.items_by_key("a", ["k1", "k2"])) == {"k1", "k2"}
        assert set(store.items_by_key("c", ["k1", "k2"])) == {"k1"}  # k2 is past b's fork
        # writes after the migration: the forks still see only what they had
        store.commit("a", 3, append=_items(3, "late"))
        store.commit("b", 2, append=_items(2, "b2"))
        b = store.load("b").history
        assert [item["content"] for item in b[-6:]] == ["b 0", "b 1", "b 2", "b 3", "b2 0", "b2 1"]
        assert store.load("c").history == expected["c"][3]
        store.delete("a")  # b and c keep every item they shared with a
        assert store.load("b").history == b
        assert store.load("c").history == expected["c"][3]
        new = store.create(Session(history=_items(2, "new")))  # a new session's own range
        assert [item["content"] for item in store.load(new.id).history] == ["new 0", "new 1"]
        assert [h.id for h in store.list(status="finished").sessions] == ["d"]
        listed = store.list().sessions  # every status, merged from the status index
        assert {h.id for h in listed} == set(expected) - {"a"} | {new.id}
        assert [(h.updated_at, h.id) for h in listed] == sorted(
            ((h.updated_at, h.id) for h in listed), reverse=True
        )
        assert [h.id for h in store.list(metadata={"team": "blue"}).sessions] == []  # a was deleted

    with _raw(old) as conn:
        assert conn.execute("SELECT max(version) FROM tether_schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )
        assert conn.execute("PRAGMA index_list(tether_items)").fetchall() == []
        status = conn.execute("PRAGMA index_info(tether_sessions_status)").fetchall()
        # migration 8: with expires_at, and no index on updated_at alone
        assert [row[2] for row in status] == ["status", "updated_at", "id", "expires_at"]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(tether_sessions)")}
        assert "tether_sessions_updated" not in indexes
        bad = conn.execute(
            "SELECT count(*) FROM tether_items i JOIN tether_sessions s ON s.id = i.session_id "
            "WHERE i.k != (s.num << 32) + i.seq"
        ).fetchone()
        assert bad == (0,)


def test_item_rows_are_one_b_tree_keyed_by_the_session_number_and_seq(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        first = store.create(Session(history=_items(3, "x")))
        second = store.create(Session(history=_items(2, "y")))
        rows = store._conn.execute(
            "SELECT s.id, s.num, i.k, i.seq FROM tether_items i "
            "JOIN tether_sessions s ON s.id = i.session_id ORDER BY i.k"
        ).fetchall()
    nums = {row[0]: row[1] for row in rows}
    assert nums[second.id] == nums[first.id] + 1
    assert [(sid, k - (num << 32)) for sid, num, k, _ in rows] == [
        (first.id, 1),
        (first.id, 2),
        (first.id, 3),
        (second.id, 1),
        (second.id, 2),
    ]


def test_a_seq_past_a_sessions_range_is_refused_not_written_into_the_next(
    tmp_path: Path,
) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.create(Session(id="full", history=_items(1, "f")))
        store.create(Session(id="next", history=_items(1, "n")))
        top = (1 << 32) - 1
        store._conn.execute(
            "UPDATE tether_sessions SET last_seq = ?, history_len = 0 WHERE id = 'full'", (top,)
        )
        with pytest.raises(tether.StoreError, match="CHECK constraint"):
            store.commit("full", 1, append=_items(1, "over"))
        assert [item["content"] for item in store.load("next").history] == ["n 0"]
        assert store.load("full").version == 1


def test_a_load_decodes_many_rows_in_chunks_in_order(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.create(Session(id="s", history=_items(601, "m")))
        contents = [item["content"] for item in store.load("s").history]
        assert contents == [f"m {i}" for i in range(601)]
        window = store.load("s", after=240, limit=300).history
        assert [item["seq"] for item in window] == list(range(241, 541))


def test_a_row_holding_two_json_values_is_corrupt_not_two_items(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.create(Session(id="s", history=_items(3, "m")))
        store._conn.execute(
            "UPDATE tether_items SET data = data || ',' || data WHERE session_id = 's' AND seq = 2"
        )
        with pytest.raises(tether.CorruptSession, match="not one JSON value"):
            store.load("s")


def test_a_status_listing_reads_the_status_index_in_order(tmp_path: Path) -> None:
    """A status filter reads the newest sessions of that status from the (status, updated_at,
    id) index (migration 7): no sort of every session of the status. With the status index
    on (status) alone, the runtime's default listing (every status but archived) of the
    newest 50 among 100,000 sessions took ~120 ms instead of ~5 (benchmarks/inspector.py)."""
    with SQLiteStore(tmp_path / "s.db") as store:
        for i in range(30):
            store.create(Session(status="finished" if i % 3 else "new"))
    with _raw(tmp_path / "s.db") as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM tether_sessions s WHERE "
            "(s.expires_at IS NULL OR s.expires_at > 0) AND s.status IN (?) "
            "ORDER BY s.updated_at DESC, s.id DESC LIMIT 51",
            ("finished",),
        ).fetchall()
        text = " | ".join(str(row[3]) for row in plan)
        assert "tether_sessions_status" in text, text
        assert "TEMP B-TREE" not in text, text
    with SQLiteStore(tmp_path / "s.db") as store:
        newest = store.list(status=["new", "finished"], limit=5).sessions
        stamps = [h.updated_at for h in newest if h.updated_at is not None]
        assert len(stamps) == 5
        assert stamps == sorted(stamps, reverse=True)
