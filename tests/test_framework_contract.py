"""The framework contract beyond the conformance clauses: what each store's reads cost.

Keyed reads and tail writes must cost the same at any history length. The SQLite tests prove
it the way tests/test_paged_history.py proves page-only reads: every row the call must not
read is damaged first (a store that read one would fail to decode it), and the query plan
must be an index search.
"""

from __future__ import annotations

import sqlite3
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from tether import KeyedItem, Session
from tether.errors import CorruptSession, DuplicateItemKey
from tether.stores._sqlite_sql import items_query
from tether.stores.file import FileStore
from tether.stores.kv_memory import DictKVBackend
from tether.stores.kv_sync import KVStore
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

from .conftest import drop_postgres_schema, with_options


def _items(n: int, tag: str = "m") -> list[dict[str, Any]]:
    return [{"type": "message", "content": f"{tag}{i}"} for i in range(n)]


def _contents(store: SQLiteStore | MemoryStore, sid: str) -> list[tuple[int, Any]]:
    return [(e.seq, e.item.get("content", e.key)) for e in store.load(sid).items]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    store = SQLiteStore(tmp_path / "contract.db")
    yield store
    store.close()


def test_sqlite_keyed_read_is_an_index_search_reading_only_its_rows(
    sqlite_store: SQLiteStore,
) -> None:
    store = sqlite_store
    store.create(Session(id="s", history=_items(500)))
    store.commit("s", 1, append=[KeyedItem("ckpt-1", {"type": "checkpoint", "n": 1})])
    store.commit("s", 2, append=[*_items(500, "b"), KeyedItem("ckpt-2", {"n": 2})])
    # every other row is damaged: only the keyed rows may be read
    store._conn.execute("UPDATE tether_items SET data = 'not json' WHERE seq NOT IN (501, 1002)")
    found = store.items_by_key("s", ["ckpt-2", "ckpt-1", "nope"])
    assert {k: (v.seq, v.item) for k, v in found.items()} == {
        "ckpt-1": (501, {"type": "checkpoint", "n": 1}),
        "ckpt-2": (1002, {"n": 2}),
    }
    with pytest.raises(CorruptSession):
        store.load("s", last=3)  # the damage is real
    plans = [
        " ".join(str(row[-1]) for row in store._conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        for sql, args in (
            ("SELECT seq FROM tether_item_keys WHERE session_id = ? AND key IN (?)", ("s", "k")),
            items_query("s", [], 1, limit=1),  # the store's own read of seq 2
        )
    ]
    assert all("SEARCH" in plan and "SCAN" not in plan for plan in plans), plans


def test_sqlite_tail_write_reads_no_kept_row(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store
    store.create(Session(id="s", history=_items(1000)))
    store._conn.execute("UPDATE tether_items SET data = 'not json' WHERE seq <= 997")
    assert store.replace_tail("s", 1, 998, [{"type": "compaction"}]) == 2
    assert [e.item for e in store.load("s", after=997).items] == [
        {"type": "message", "content": "m997"},
        {"type": "compaction"},
    ]
    assert store.load("s", last=0).history_len == 999


def test_sqlite_tail_writes_keep_forks_whole_and_forks_keep_keys(
    sqlite_store: SQLiteStore,
) -> None:
    store, memory = sqlite_store, MemoryStore()
    for target in (store, memory):
        target.create(Session(id="p", history=_items(4)))
        target.commit("p", 1, append=[KeyedItem("k5", {"content": "k5"}), *_items(2, "x")])
        target.fork_session(Session(id="c", parent_id="p"), 6)  # shares the parent's rows
        target.replace_tail("p", 2, 2, [KeyedItem("k5", {"content": "again"})])  # under c
        target.replace_tail("c", 1, 5, [{"content": "c6"}])  # into its shared range
        target.fork_session(Session(id="g", parent_id="c"), 5)
    for sid in ("p", "c", "g"):
        assert _contents(store, sid) == _contents(memory, sid), sid
        mine, theirs = store.items_by_key(sid, ["k5"]), memory.items_by_key(sid, ["k5"])
        assert [(v.seq, v.item) for v in mine.values()] == [
            (v.seq, v.item) for v in theirs.values()
        ], sid
    assert store.items_by_key("c", ["k5"])["k5"].item == {"content": "k5"}
    assert store.items_by_key("p", ["k5"])["k5"].item == {"content": "again"}
    with pytest.raises(DuplicateItemKey):
        store.commit("g", 1, append=[KeyedItem("k5", {})])


def test_sqlite_database_version_5_indexes_keys(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "v.db").close()
    conn = sqlite3.connect(tmp_path / "v.db")
    assert conn.execute("SELECT max(version) FROM tether_schema_migrations").fetchone()[0] >= 5
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(tether_item_keys)")}
    assert any(name.startswith("sqlite_autoindex") for name in indexes) or indexes
    conn.close()


# --- the file store: a key map in the header, records read by their offset ---------------------


def _damage_all_but(log: Path, keep: set[int]) -> None:
    """Flip a payload byte of every record whose index is not in ``keep``."""
    data = bytearray(log.read_bytes())
    pos = index = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if index not in keep:
            data[pos + 8 + 1] ^= 0x01
        pos += 8 + length
        index += 1
    log.write_bytes(bytes(data))


def test_file_keyed_read_reads_only_its_records(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.create(Session(id="s", history=_items(300)))
    store.commit("s", 1, append=[KeyedItem("a", {"n": 1}), *_items(300), KeyedItem("b", {})])
    (log,) = tmp_path.glob("s.*.log")
    _damage_all_but(log, {300, 601})
    found = store.items_by_key("s", ["b", "a", "c"])
    assert {k: (v.seq, v.item) for k, v in found.items()} == {"a": (301, {"n": 1}), "b": (602, {})}
    with pytest.raises(CorruptSession):
        store.load("s", last=3)
    # claims and renewals rewrite the header: the key map goes with it
    lease = store.claim("s", "w", 60)
    store.release(lease)
    assert sorted(store.items_by_key("s", ["a", "b"])) == ["a", "b"]


def test_file_truncation_rewrites_only_the_header(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.create(Session(id="s", history=_items(5)))
    store.commit("s", 1, append=[KeyedItem("k", {"n": 6})])
    (log,) = tmp_path.glob("s.*.log")
    size = log.stat().st_size
    assert store.replace_tail("s", 2, 3) == 3
    assert (list(tmp_path.glob("s.*.log")), log.stat().st_size) == ([log], size)
    assert [e.seq for e in store.load("s").items] == [1, 2, 3]
    assert store.items_by_key("s", ["k"]) == {}
    # the next append cuts the bytes past the committed length, and may reuse the key
    store.append("s", [KeyedItem("k", {"n": 4})])
    assert [e.item.get("n") for e in store.load("s", after=2).items] == [None, 4]
    assert store.items_by_key("s", ["k"])["k"].seq == 4
    # replacing with items writes a new generation holding the kept bytes as they were
    before = log.read_bytes()
    store.replace_tail("s", 4, 2, [{"n": 3}])
    (new_log,) = tmp_path.glob("s.*.log")
    assert new_log != log
    kept = FileStore(tmp_path).load("s")
    assert [e.item.get("n", e.item.get("content")) for e in kept.items] == ["m0", "m1", 3]
    two = sum(
        8 + struct.unpack_from(">I", before, pos)[0]
        for pos in (0, 8 + struct.unpack_from(">I", before, 0)[0])
    )
    assert new_log.read_bytes()[:two] == before[:two], "kept records copied byte for byte"


# --- the key-value kit: keys in the header, a read by key reads one chunk -----------------------


class _CountingBackend(DictKVBackend):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []
        self.puts: list[str] = []

    def get(self, key: str) -> Any:
        self.gets.append(key)
        return super().get(key)

    def put(self, key: str, value: bytes, revision: Any) -> Any:
        self.puts.append(key)
        return super().put(key, value, revision)


def test_kv_keyed_read_and_tail_write_cost_the_same_at_any_length() -> None:
    costs = []
    for length in (40, 4000):
        backend = _CountingBackend()
        store = KVStore(backend, chunk_items=32)
        store.create(Session(id="s", history=_items(length)))
        store.commit("s", 1, append=[KeyedItem("k", {"n": 1}), *_items(5, "b")])
        store._blobs.clear()  # a fresh process: nothing cached
        backend.gets.clear()
        assert store.items_by_key("s", ["k"])["k"].item == {"n": 1}
        reads = len(backend.gets)
        backend.puts.clear()
        version = store.replace_tail("s", 2, length + 3, [{"n": 2}])  # inside the tail
        writes = len(backend.puts)
        assert [e.item for e in store.load("s", last=2).items] == [
            {"type": "message", "content": "b1"},
            {"n": 2},
        ]
        backend.puts.clear()
        store.replace_tail("s", version, length + 1)  # truncation: still inside the tail
        costs.append((reads, writes, len(backend.puts)))
        assert store.items_by_key("s", ["k"])["k"].seq == length + 1
    assert costs[0] == costs[1], costs
    # a read: the header and one chunk; a tail write: one new tail and the header
    assert costs[0] == (2, 2, 2)


# --- PostgreSQL: primary-key lookups, and a tail statement that reads only the suffix -----------


def _rows_read(plan: dict[str, Any], table: str) -> int:
    """The rows a JSON EXPLAIN ANALYZE plan read from ``table``, over all its nodes."""
    rows = 0
    if plan.get("Relation Name") == table:
        rows += int(plan["Actual Rows"]) * int(plan["Actual Loops"])
        rows += int(plan.get("Rows Removed by Filter", 0)) * int(plan["Actual Loops"])
    for child in plan.get("Plans", []):
        rows += _rows_read(child, table)
    return rows


def test_postgres_keyed_read_and_tail_read_no_other_row(postgres_url: str) -> None:
    import psycopg

    from tether.stores.postgres import _rows
    from tether.stores.postgres_sync import PostgresStore

    schema_name = f"tether_tfc_{uuid.uuid4().hex[:16]}"
    try:
        with PostgresStore.from_url(with_options(postgres_url, schema=schema_name)) as store:
            store.create(Session(id="s", history=_items(500)))
            store.commit("s", 1, append=[KeyedItem("k", {"n": 1}), *_items(499, "b")])
            assert store.items_by_key("s", ["k", "nope"])["k"].seq == 501
            with psycopg.connect(postgres_url, autocommit=True) as conn:

                def plan(statement: bytes, params: dict[str, Any]) -> dict[str, Any]:
                    with conn.transaction(force_rollback=True):
                        row = conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                        found = row.fetchone()
                        assert found is not None
                        return dict(found[0][0]["Plan"])

                keyed = plan(store._sql.items_by_key, {"id": "s", "keys": ["k"], "now": None})
                assert _rows_read(keyed, "tether_items") == 1
                assert _rows_read(keyed, "tether_item_keys") == 1
                params = _rows.write_params("s", 2, None, [{"n": 2}], None)
                params.update(_rows.changes_params({}), after=997)
                tail = plan(store._sql.tail, params)
                # rows 998..1000 touched (one updated in place, two deleted): never the 997 kept
                assert _rows_read(tail, "tether_items") <= 3
            assert store.replace_tail("s", 2, 997, [{"n": 2}]) == 3
            assert [e.item for e in store.load("s", after=996).items] == [
                {"type": "message", "content": "b495"},
                {"n": 2},
            ]
    finally:
        drop_postgres_schema(postgres_url, schema_name)


# --- export and import keep items exactly, keys included ----------------------------------------


def test_an_export_line_keeps_exact_items_and_keys(tmp_path: Path) -> None:
    from tether.cli import transfer

    odd = {"type": "event", "seq": "own", "timestamp": 12.5}
    with SQLiteStore(tmp_path / "a.db") as source, FileStore(tmp_path / "b") as target:
        source.create(Session(id="x", history=[{"type": "message", "content": "no role"}]))
        source.commit("x", 1, append=[KeyedItem("e1", odd)])
        original = source.load("x")
        line = transfer.export_line(original)
        parsed = transfer.parse_line(line)
        assert parsed.items == original.items
        target.restore(parsed)
        copied = target.load("x")
        assert copied.items == original.items
        assert copied.items[1].item == odd
        assert target.items_by_key("x", ["e1"])["e1"].item == odd
        assert transfer.digest(copied) == transfer.digest(original)


def test_items_follow_edits_of_history() -> None:
    with MemoryStore() as store:
        store.create(Session(id="s"))
        store.commit("s", 1, append=[KeyedItem("k", {"n": 1}), {"n": 2}])
        loaded = store.load("s")
        loaded.history[0]["n"] = 10
        assert [(e.key, e.item) for e in loaded.items] == [("k", {"n": 10}), (None, {"n": 2})]
        store.restore(loaded, replace=True)
        assert store.items_by_key("s", ["k"])["k"].item == {"n": 10}


def test_the_agent_runtime_runs_on_a_history_with_framework_items() -> None:
    """The runtime needs roles only in what it writes: items without one are kept, not sent."""
    from tether.agent.agent_sync import Agent
    from tether.agent.models import ScriptedModel

    with MemoryStore() as store:
        store.create(Session(id="s", history=[{"type": "reasoning", "summary": []}]))
        store.append("s", [KeyedItem("ck", {"type": "checkpoint", "n": 1})])
        model = ScriptedModel(["Hello!"])
        assert Agent(store, llm=model).chat("s", "Hi") == "Hello!"
        loaded = store.load("s")
        assert loaded.items[0].item == {"type": "reasoning", "summary": []}
        assert store.items_by_key("s", ["ck"])["ck"].seq == 2
        assert [i.get("role") for i in loaded.history[2:]] == [
            "user",
            "tether",
            "assistant",
            "tether",
        ]
