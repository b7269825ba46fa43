"""Behaviour specific to the SQLite store: opening, migrations, rows, URLs, locks, query plans.

The generic contract (round trips, conflicts, windows, listing, expiry, races) is covered by
the conformance suite in test_conformance.py; this module covers only what the SQLite layout
and its connection handling promise (see the docstring of tether.stores.sqlite).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import datetime, timedelta, timezone
from multiprocessing.synchronize import Event, Semaphore
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import Session, SessionHeader, SessionStatus
from tether.stores import _sqlite_migrations
from tether.stores.memory import MemoryStore
from tether.stores.sqlite import DEFAULT_PATH, AsyncSQLiteStore, SQLiteStore

MIGRATIONS = len(_sqlite_migrations.MIGRATIONS)


def _items(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{prefix} message number {i}"} for i in range(count)]


def _texts(items: Sequence[dict[str, Any]]) -> list[str]:
    return [item["content"] for item in items]


def _raw(path: Path) -> closing[sqlite3.Connection]:
    """A connection of our own, beside the store's, in autocommit mode."""
    return closing(sqlite3.connect(path, isolation_level=None))


def _migration_rows(path: Path) -> list[tuple[int, int]]:
    with _raw(path) as conn:
        return conn.execute(
            "SELECT version, applied_at FROM tether_schema_migrations ORDER BY version"
        ).fetchall()


def _pragma(store: SQLiteStore, name: str) -> Any:
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(db_path) as store:
        yield store


# --- opening and migrations ----------------------------------------------------------------------


def _open_and_create(path: str, index: int, ready: Semaphore, go: Event) -> None:
    """In a spawned process: wait for the start signal, open the new database, create one."""
    ready.release()
    if not go.wait(60):
        raise RuntimeError("never told to start")
    with SQLiteStore(path, timeout=30) as store:
        store.create(Session(id=f"worker-{index}", history=_items(1)))


@pytest.mark.slow
def test_many_processes_open_a_new_database_at_once(db_path: Path) -> None:
    assert not db_path.exists()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    workers = 8
    procs = [
        ctx.Process(target=_open_and_create, args=(str(db_path), index, ready, go))
        for index in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            assert ready.acquire(timeout=60), "a worker did not start"
        go.set()
        for proc in procs:
            proc.join(timeout=60)
        assert [proc.exitcode for proc in procs] == [0] * workers
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()

    with SQLiteStore(db_path) as store:
        ids = sorted(header.id for header in store.list().sessions)
        assert _pragma(store, "journal_mode") == "wal"
    assert ids == sorted(f"worker-{index}" for index in range(workers))
    assert [version for version, _ in _migration_rows(db_path)] == list(range(1, MIGRATIONS + 1))


def test_opening_again_is_idempotent_and_uses_wal(db_path: Path) -> None:
    with SQLiteStore(db_path) as first:
        first.create(Session(id="s"))
    rows = _migration_rows(db_path)
    assert [version for version, _ in rows] == list(range(1, MIGRATIONS + 1))
    with SQLiteStore(db_path) as second:
        assert second.load("s").version == 1
    assert _migration_rows(db_path) == rows
    with _raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_synchronous_setting(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "normal.db") as normal:
        assert _pragma(normal, "synchronous") == 1
    with SQLiteStore(tmp_path / "full.db", synchronous="full") as full:
        assert _pragma(full, "synchronous") == 2
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "bad.db", synchronous="off")


def test_database_from_a_newer_tether_is_refused(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        store.create(Session(id="s"))
    newer = MIGRATIONS + 1
    with _raw(db_path) as conn:
        conn.execute(
            "INSERT INTO tether_schema_migrations (version, applied_at) VALUES (?, 0)", (newer,)
        )
    rows = _migration_rows(db_path)

    with pytest.raises(tether.StoreError, match="upgrade tether") as info:
        SQLiteStore(db_path)
    assert str(newer) in str(info.value)
    assert _migration_rows(db_path) == rows  # left untouched


# --- rows ----------------------------------------------------------------------------------------


def test_one_row_per_item_and_commits_never_rewrite_earlier_items(
    store: SQLiteStore, db_path: Path
) -> None:
    created = store.create(Session(id="s", history=_items(300)))
    version = store.commit("s", created.version, append=_items(200, "b"))
    store.create(Session(id="other", history=_items(3)))

    query = "SELECT rowid, seq, data FROM tether_items WHERE session_id = 's' ORDER BY rowid"
    with _raw(db_path) as conn:
        before = conn.execute(query).fetchall()
    assert [seq for _, seq, _ in before] == list(range(1, 501))

    version = store.commit("s", version, append=_items(2, "new"), changes={"state": {"n": 1}})

    with _raw(db_path) as conn:
        after = conn.execute(query).fetchall()
        total = conn.execute("SELECT count(*) FROM tether_items").fetchone()[0]
    assert len(after) == len(before) + 2
    assert after[:500] == before  # same rowids, same seqs, byte-identical data
    assert [seq for _, seq, _ in after[500:]] == [501, 502]
    assert total == 502 + 3
    loaded = store.load("s", last=2)
    assert (loaded.version, loaded.history_len) == (version, 502)
    assert _texts(loaded.history) == _texts(_items(2, "new"))


# --- default path and URLs -----------------------------------------------------------------------


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_URL", raising=False)
    default_file = tmp_path / ".tether" / "sessions.db"
    assert Path(".tether") / "sessions.db" == DEFAULT_PATH

    with SQLiteStore() as store:
        assert default_file.is_file()
        store.create(Session(id="s"))
    with tether.open_store() as opened:
        assert isinstance(opened, SQLiteStore)
        assert opened.load("s").version == 1  # the same file

    monkeypatch.setenv("TETHER_URL", "memory://")
    with tether.open_store() as memory:
        assert isinstance(memory, MemoryStore)


def test_sqlite_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    with SQLiteStore.from_url("sqlite:///rel.db") as relative:
        assert relative.path == "rel.db"
        assert (work / "rel.db").is_file()

    absolute_file = tmp_path / "abs" / "path.db"
    url = f"sqlite:///{absolute_file}"
    assert url.startswith("sqlite:////")
    with SQLiteStore.from_url(url) as absolute:
        assert absolute.path == str(absolute_file)
        assert absolute_file.is_file()

    with SQLiteStore.from_url("sqlite://") as default:
        assert default.path == str(DEFAULT_PATH)
        assert (work / ".tether" / "sessions.db").is_file()

    with SQLiteStore.from_url("sqlite:///opts.db?synchronous=full&timeout=5") as tuned:
        assert _pragma(tuned, "synchronous") == 2
        assert _pragma(tuned, "busy_timeout") == 5000
    with tether.open_store("sqlite:///opts.db") as untuned:
        assert isinstance(untuned, SQLiteStore)
        assert _pragma(untuned, "synchronous") == 1
        assert _pragma(untuned, "busy_timeout") == 30000


def test_sqlite_url_refuses_a_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tether.ConfigurationError, match="host"):
        SQLiteStore.from_url("sqlite://host/x.db")
    assert not any(tmp_path.iterdir())


def test_sqlite_url_refuses_unknown_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tether.ConfigurationError, match="bogus") as info:
        SQLiteStore.from_url("sqlite:///x.db?bogus=1")
    assert "synchronous" in str(info.value)
    assert "timeout" in str(info.value)
    with pytest.raises(tether.ConfigurationError, match="synchronous"):
        SQLiteStore.from_url("sqlite:///x.db?synchronous=off")
    assert not any(tmp_path.iterdir())


# --- corruption ----------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["state", "metadata", "options"])
def test_corrupt_json_column_raises_corrupt_session(
    store: SQLiteStore, db_path: Path, column: str
) -> None:
    store.create(Session(id="good", state={"a": 1}))
    store.create(Session(id="bad", state={"a": 2}))
    with _raw(db_path) as conn:
        conn.execute(f"UPDATE tether_sessions SET {column} = 'not json' WHERE id = 'bad'")

    with pytest.raises(tether.CorruptSession, match="'bad'") as info:
        store.load("bad")
    assert info.value.session_id == "bad"
    assert column in str(info.value)
    assert store.load("good").state == {"a": 1}
    assert store.exists("bad") is True
    assert store.delete("bad") is True
    assert store.create(Session(id="bad")).version == 1


def test_a_commit_on_a_corrupt_state_writes_nothing(store: SQLiteStore, db_path: Path) -> None:
    """A commit reads only the header fields it needs, ``state`` among them (a new state keeps
    the stored runtime block): an unreadable one is reported, and nothing is written."""
    store.create(Session(id="bad", history=_items(1)))
    with _raw(db_path) as conn:
        conn.execute("UPDATE tether_sessions SET state = 'not json' WHERE id = 'bad'")
    with pytest.raises(tether.CorruptSession, match="state"):
        store.commit("bad", 1, append=_items(1, "x"))
    with _raw(db_path) as conn:
        row = conn.execute("SELECT version, last_seq FROM tether_sessions WHERE id = 'bad'")
        assert row.fetchone() == (1, 1)
        assert conn.execute("SELECT count(*) FROM tether_items").fetchone() == (1,)


def test_corrupt_header_does_not_break_listing(store: SQLiteStore, db_path: Path) -> None:
    for session_id in ("a", "b", "c"):
        store.create(Session(id=session_id))
    with _raw(db_path) as conn:
        conn.execute("UPDATE tether_sessions SET state = 'not json' WHERE id = 'b'")
    assert sorted(header.id for header in store.list().sessions) == ["a", "c"]


# --- durability and locking ----------------------------------------------------------------------


def test_commit_survives_the_process_being_killed(store: SQLiteStore, db_path: Path) -> None:
    store.create(Session(id="s", history=_items(1)))
    code = textwrap.dedent(
        f"""
        import os, signal
        from tether.stores.sqlite import SQLiteStore

        store = SQLiteStore({str(db_path)!r})
        version = 1
        for index in range(3):
            version = store.commit(
                "s", version,
                append=[{{"role": "user", "content": f"child {{index}}"}}],
                changes={{"state": {{"step": index}}}},
            )
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()

    with SQLiteStore(db_path) as fresh:
        loaded = fresh.load("s")
    assert loaded.version == 4
    assert loaded.state == {"step": 2}
    assert _texts(loaded.history)[1:] == ["child 0", "child 1", "child 2"]
    assert [item["seq"] for item in loaded.history] == [1, 2, 3, 4]


def test_driver_errors_are_wrapped(db_path: Path) -> None:
    with SQLiteStore(db_path, timeout=0.1) as store:
        store.create(Session(id="s"))
        with _raw(db_path) as other:
            other.execute("BEGIN EXCLUSIVE")
            try:
                with pytest.raises(tether.StoreError, match=r"sessions\.db") as info:
                    store.commit("s", 1, append=_items(1))
            finally:
                other.execute("ROLLBACK")
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert not isinstance(info.value, tether.ConflictError)
        assert store.load("s").version == 1  # nothing was written
        assert store.commit("s", 1, append=_items(1)) == 2
        assert _texts(store.load("s").history) == _texts(_items(1))


# --- query plans ---------------------------------------------------------------------------------


class _RecordingConnection:
    """Stands in for the store's connection and records every statement it executes."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _list_plan(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, **filters: Any) -> str:
    real = store._conn
    recorder = _RecordingConnection(real)
    with monkeypatch.context() as patch:
        patch.setattr(store, "_conn", recorder)
        store.list(**filters)
    selects = [(sql, p) for sql, p in recorder.statements if sql.startswith("SELECT")]
    assert len(selects) == 1
    sql, params = selects[0]
    rows = real.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return "\n".join(str(row[3]) for row in rows)


@pytest.fixture
def listed_store(store: SQLiteStore) -> SQLiteStore:
    for index in range(6):
        store.create(
            Session(
                id=f"s{index}",
                owner=f"owner-{index % 2}",
                agent=f"agent-{index % 3}",
                metadata={"channel": f"c{index % 2}"},
            )
        )
    return store


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        pytest.param({}, "tether_sessions_status", id="none"),
        pytest.param({"owner": "owner-1"}, "tether_sessions_owner", id="owner"),
        pytest.param({"agent": "agent-2"}, "tether_sessions_agent", id="agent"),
        pytest.param({"status": "new"}, "tether_sessions_status", id="status"),
        pytest.param(
            {"status": ["new", "running"]}, "tether_sessions_status", id="several-statuses"
        ),
        pytest.param(
            {"metadata": {"channel": "c1"}},
            "tether_session_meta_kv",
            id="metadata",
        ),
    ],
)
def test_list_uses_an_index_for_every_filter(
    listed_store: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
    filters: dict[str, Any],
    index: str,
) -> None:
    plan = _list_plan(listed_store, monkeypatch, **filters)
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
    # the plan's first step is driven by the filter's index, never a bare table scan
    assert "SCAN s\n" not in f"{plan}\n", plan
    assert "SCAN s USING" not in plan, plan  # a search of the index, never a walk of it


def test_a_listing_without_filters_reads_each_status_from_its_covering_index(
    listed_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no index on updated_at alone (migration 8): the newest page of each status, merged
    plan = _list_plan(listed_store, monkeypatch)
    searches = plan.count("SEARCH s USING COVERING INDEX tether_sessions_status (status=?)")
    assert searches == len(SessionStatus), plan
    names = {row[0] for row in listed_store._conn.execute("SELECT name FROM sqlite_master")}
    assert "tether_sessions_updated" not in names


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({}, id="none"),
        pytest.param({"status": ["new", "running", "finished"]}, id="statuses"),
        pytest.param({"updated_after": "middle"}, id="updated-after"),
    ],
)
def test_listing_pages_match_one_sort_of_every_session(
    db_path: Path, filters: dict[str, Any]
) -> None:
    # the merge of the statuses' pages against the plain truth: every live session matching,
    # sorted by (updated_at, id) descending, cut into pages of every size; a clock that ticks
    # every third call gives updated_at ties, and one expired session must never be listed
    ticks = iter(range(10_000))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def clock() -> datetime:
        return start + timedelta(seconds=next(ticks) // 3)

    statuses = ["new", "running", "finished", "waiting", "archived"]
    with SQLiteStore(db_path, clock=clock) as store:
        for index in range(37):
            store.create(Session(id=f"s{index:02}", status=statuses[index % 5]))
        store.create(Session(id="expired", expires_at=start - timedelta(days=1)))
        every = _all_pages(store, limit=500)
        assert "expired" not in {h.id for h in every}
        if filters.get("updated_after") == "middle":
            stamps = sorted(h.updated_at for h in every if h.updated_at is not None)
            filters = {"updated_after": stamps[len(stamps) // 2]}
        expected = [
            h.id
            for h in sorted(every, key=lambda h: (h.updated_at, h.id), reverse=True)
            if _matches(h, filters)
        ]
        assert len(expected) >= 5
        for limit in (1, 4, 7, 50):
            assert [h.id for h in _all_pages(store, limit=limit, **filters)] == expected


def _all_pages(store: SQLiteStore, limit: int = 50, **filters: Any) -> list[SessionHeader]:
    found: list[SessionHeader] = []
    cursor = None
    while True:
        page = store.list(limit=limit, cursor=cursor, **filters)
        found += page.sessions
        cursor = page.next_cursor
        if cursor is None:
            return found


def _matches(header: SessionHeader, filters: dict[str, Any]) -> bool:
    status = filters.get("status")
    if status is not None and header.status.value not in status:
        return False
    after = filters.get("updated_after")
    return after is None or header.updated_at > after


# --- async ---------------------------------------------------------------------------------------


async def test_async_sqlite_store_runs_calls_off_the_event_loop(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AsyncSQLiteStore(db_path)
    threads: list[int] = []
    real_load = store.sync.load

    def recording_load(
        session_id: str, *, last: int | None = None, after: int | None = None
    ) -> Session:
        threads.append(threading.get_ident())
        return real_load(session_id, last=last, after=after)

    monkeypatch.setattr(store.sync, "load", recording_load)
    async with store:
        await store.create(Session(id="s", history=_items(2)))
        loaded = await store.load("s", last=1)
    assert _texts(loaded.history) == _texts(_items(2))[-1:]
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_the_database_and_its_wal_files_are_private_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    path = tmp_path / "new" / "sessions.db"
    old = os.umask(mask)
    try:
        with SQLiteStore(path) as store:
            created = store.create(Session(history=[{"role": "user", "content": "hi"}]))
            store.claim(created.id, "worker-1", 300)  # the lease token is in the database
            names = sorted(p.name for p in path.parent.iterdir())
            assert names == ["sessions.db", "sessions.db-shm", "sessions.db-wal"]
            modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(names, 0o600)
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    SQLiteStore(path).close()
    path.chmod(0o640)
    with SQLiteStore(path) as store:
        store.create(Session())
    assert (path.stat().st_mode & 0o777) == 0o640


def test_the_kept_cursor_leaves_no_read_open(tmp_path: Path) -> None:
    """Commits and change marks run on one kept cursor: after each, no statement of it is
    left open (an open one would hold a read snapshot, and a checkpoint could not finish)."""
    path = tmp_path / "kept.db"
    store = SQLiteStore(path)
    try:
        sessions = tether.Sessions(store)
        sid = sessions.create(history=[{"role": "user", "content": "hi"}]).id
        with pytest.raises(tether.errors.ConflictError):  # a failed commit, rolled back
            store.commit(sid, 99, append=[{"role": "user", "content": "stale"}])
        for n in range(3):
            sessions.get(sid)  # reads the change mark
            sessions.execute(sid, tether.AppendMessages({"role": "user", "content": str(n)}))
        with _raw(path) as other:  # a write after them, then a checkpoint of every frame
            other.execute("CREATE TABLE probe (x)")
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 0
            count = other.execute("SELECT count(*) FROM tether_items").fetchone()[0]
        assert count == 4 == len(store.load(sid).history)
    finally:
        store.close()
