"""Paged history: ``load(limit=)`` reads only the page, and ``iter_history`` stays in bounded
memory however long the history (the contract's clauses are in the conformance suite)."""

from __future__ import annotations

import gc
import itertools
import struct
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import CorruptSession, Session, Store
from tether.stores.file import FileStore
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import SQLiteStore

from .conftest import drop_postgres_schema, wipe_redis_namespace, with_options


def _items(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{prefix}{i}"} for i in range(count)]


def _contents(session: Session) -> list[tuple[int, str]]:
    """What a load returned, without the timestamps (two stores stamp at different times)."""
    return [(item["seq"], item["content"]) for item in session.history]


class CountingLoads:
    """Wraps a store's ``load`` to record the window of every call."""

    def __init__(self, store: Store) -> None:
        self.calls: list[dict[str, Any]] = []
        self._load = store.load

    def __call__(self, session_id: str, **window: Any) -> Session:
        self.calls.append(window)
        return self._load(session_id, **window)


# --- a 100,000-item history in bounded memory -------------------------------------------------

TOTAL = 100_000
PAGE = 1000


@pytest.mark.heavy
def test_iterating_100k_items_on_sqlite_stays_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filler = "x" * 200
    with SQLiteStore(tmp_path / "long.db") as store:
        batch = 10_000
        session = store.create(
            Session(
                id="long",
                history=[{"role": "user", "content": f"{i} {filler}"} for i in range(batch)],
            )
        )
        version = session.version
        for start in range(batch, TOTAL, batch):
            items = [
                {"role": "user", "content": f"{i} {filler}"} for i in range(start, start + batch)
            ]
            version = store.commit("long", version, append=items)
        del session, items
        loads = CountingLoads(store)
        monkeypatch.setattr(store, "load", loads)

        gc.collect()
        tracemalloc.start()
        try:
            count = 0
            expected = 1
            for item in store.iter_history("long", page_size=PAGE):
                assert item["seq"] == expected
                expected += 1
                count += 1
            _, paged_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            whole = store.load("long")
            _, whole_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert count == TOTAL
    assert len(whole.history) == TOTAL
    assert whole.history[-1]["content"] == f"{TOTAL - 1} {filler}"
    # page by page: one load per page, each of at most PAGE items, and no load of it all
    page_loads = [call for call in loads.calls if call.get("limit") == PAGE]
    assert len(page_loads) == TOTAL // PAGE
    assert [call["after"] for call in page_loads] == [None, *range(PAGE, TOTAL, PAGE)]
    # one page of items in memory at a time: far below what the whole history needs
    assert paged_peak * 10 < whole_peak, (paged_peak, whole_peak)


# --- SQLite: pages of forks (shared rows) and of large windows --------------------------------


def _windows() -> Iterator[dict[str, int]]:
    for after, last, limit in itertools.product(
        (None, 0, 3, 9, 15, 30, 44, 60), (None, 0, 1, 7, 25, 50), (None, 1, 2, 5, 13, 100)
    ):
        window = {"after": after, "last": last, "limit": limit}
        yield {name: value for name, value in window.items() if value is not None}


def test_sqlite_pages_agree_with_the_memory_store_on_forks(tmp_path: Path) -> None:
    sqlite, memory = SQLiteStore(tmp_path / "forks.db"), MemoryStore()
    for store in (sqlite, memory):
        store.create(Session(id="root", history=_items(30, "r")))
        store.commit("root", 1, append=_items(10, "r2"))
        store.fork_session(Session(id="child", parent_id="root"), 25)  # shares root's rows
        store.commit("child", 1, append=_items(12, "c"))
        store.fork_session(Session(id="grandchild", parent_id="child"), 33)  # shares of shares
        store.commit("grandchild", 1, append=_items(9, "g"))
        store.commit("root", 2, append=_items(5, "late"))  # invisible to the forks
    shares = sqlite._conn.execute("SELECT count(*) FROM tether_item_shares").fetchone()[0]
    assert shares >= 3  # the forks really share rows, so the shared query is what is paged
    for session_id in ("root", "child", "grandchild"):
        for window in _windows():
            got = _contents(sqlite.load(session_id, **window))
            assert got == _contents(memory.load(session_id, **window)), (session_id, window)
            if "limit" in window:
                unlimited = {k: v for k, v in window.items() if k != "limit"}
                whole = _contents(sqlite.load(session_id, **unlimited))
                assert got == whole[: window["limit"]]
        paged = list(sqlite.iter_history(session_id, page_size=4))
        assert paged == sqlite.load(session_id).history
        assert [(i["seq"], i["content"]) for i in paged] == _contents(memory.load(session_id))
    sqlite.close()


def test_sqlite_limit_reads_only_the_page(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "page.db")
    store.create(Session(id="s", history=_items(50)))
    # damage every stored item past the page: a store that read them would fail to decode them
    store._conn.execute("UPDATE tether_items SET data = 'not json' WHERE seq > 12")
    assert [i["seq"] for i in store.load("s", after=5, limit=7).history] == list(range(6, 13))
    assert [i["seq"] for i in store.load("s", limit=12).history] == list(range(1, 13))
    with pytest.raises(CorruptSession):
        store.load("s", after=5, limit=8)
    store.close()


# --- the file store: frames before the window are skipped, reading stops when a page is full --


def _damage_record(log: Path, index: int) -> None:
    """Flip a byte inside the payload of record ``index``: its checksum fails when read."""
    data = bytearray(log.read_bytes())
    pos = 0
    for _ in range(index):
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 8 + length
    data[pos + 8 + 2] ^= 0x01
    log.write_bytes(bytes(data))


def test_file_store_reads_and_decodes_only_the_page(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    store.create(Session(id="s", history=_items(20)))
    log = tmp_path / "files" / "s.0.log"
    _damage_record(log, 2)  # seq 3, before the windows below
    _damage_record(log, 15)  # seq 16, after the pages below
    assert [i["seq"] for i in store.load("s", after=3, limit=12).history] == list(range(4, 16))
    assert [i["seq"] for i in store.load("s", last=17, limit=5).history] == [4, 5, 6, 7, 8]
    assert [i["seq"] for i in store.load("s", limit=2).history] == [1, 2]
    with pytest.raises(CorruptSession, match="history item 16"):
        store.load("s", after=3, limit=13)
    with pytest.raises(CorruptSession, match="history item 3"):
        store.load("s", limit=3)


def test_file_store_page_of_a_log_cut_short(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(tmp_path / "files")
    store.create(Session(id="s", history=_items(6)))
    log = tmp_path / "files" / "s.0.log"
    log.write_bytes(log.read_bytes()[:-3])  # the last record is cut (outside tether's doing)
    assert [i["seq"] for i in store.load("s", limit=3).history] == [1, 2, 3]
    assert not caplog.records  # the page ends before the cut: nothing past it was read
    assert [i["seq"] for i in store.load("s", after=3, limit=10).history] == [4, 5]
    assert "cut short: 5 of 6 items are intact" in caplog.text
    caplog.clear()
    data = log.read_bytes()
    (first_length,) = struct.unpack_from(">I", data)
    log.write_bytes(data[: 8 + first_length + 12])  # inside the second record: before the window
    assert store.load("s", after=3, limit=2).history == []
    assert "cut short: 1 of 6 items are intact" in caplog.text


# --- the server stores: the page is all the server reads ----------------------------------------


def test_redis_page_reads_only_its_items(redis_url: str) -> None:
    import redis

    from tether.stores.redis_sync import RedisStore

    namespace = f"tp{uuid.uuid4().hex}"
    try:
        with RedisStore.from_url(with_options(redis_url, namespace=namespace)) as store:
            store.create(Session(id="s", history=_items(80)))
            raw = redis.Redis.from_url(redis_url)
            try:
                items_key = store.keys.session("s")[1]
                for index in range(40, 80):  # items 41..80 can no longer be decoded
                    raw.lset(items_key, index, "not json")
            finally:
                raw.close()
            # the transaction (no after=, limit >= 32) and the script (after=) both stop there
            assert [i["seq"] for i in store.load("s", limit=40).history] == list(range(1, 41))
            assert [i["seq"] for i in store.load("s", after=30, limit=10).history] == list(
                range(31, 41)
            )
            assert [i["seq"] for i in store.load("s", last=75, limit=35).history] == list(
                range(6, 41)
            )
            with pytest.raises(CorruptSession):
                store.load("s", after=30, limit=11)
    finally:
        wipe_redis_namespace(redis_url, namespace)


def _items_rows_read(plan: dict[str, Any]) -> int:
    """The rows a JSON EXPLAIN ANALYZE plan read from tether_items, over all its nodes."""
    rows = 0
    if plan.get("Relation Name") == "tether_items":
        rows += int(plan["Actual Rows"]) * int(plan["Actual Loops"])
    for child in plan.get("Plans", []):
        rows += _items_rows_read(child)
    return rows


def test_postgres_page_reads_only_its_rows(postgres_url: str) -> None:
    import psycopg

    from tether.schema import schema
    from tether.stores.postgres_sync import PostgresStore

    schema_name = f"tether_tp_{uuid.uuid4().hex[:16]}"
    try:
        with PostgresStore.from_url(with_options(postgres_url, schema=schema_name)) as store:
            store.create(Session(id="s", history=_items(500)))
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                for window, expected in (
                    ({"after": None, "last": None, "limit": 7}, 7),
                    ({"after": 100, "last": None, "limit": 25}, 25),
                    ({"after": None, "last": 300, "limit": 10}, 10),
                    ({"after": 490, "last": None, "limit": 50}, 10),
                ):
                    params = {"id": "s", "now": None, "schema": schema.current, **window}
                    cursor = conn.execute(
                        b"EXPLAIN (ANALYZE, FORMAT JSON) " + store._sql.load, params
                    )
                    row = cursor.fetchone()
                    assert row is not None
                    (plan,) = row[0]
                    assert _items_rows_read(plan["Plan"]) == expected, window
                    loaded = store.load("s", **{k: v for k, v in window.items() if v})
                    assert len(loaded.history) == expected
    finally:
        drop_postgres_schema(postgres_url, schema_name)
