"""The one migration runner (stores/_migration_runner.py) and the SQLite store on it: the
steps applied once and in order, a database newer than the code refused, a failed step leaving
nothing behind, and several processes migrating one old database at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from multiprocessing.synchronize import Event, Semaphore
from pathlib import Path

import pytest

import tether
from tether.stores import _migration_runner as runner
from tether.stores._sqlite_migrations import MIGRATIONS, SQLiteMigrator
from tether.stores.sqlite import SQLiteStore

V1_SQL = Path(__file__).parent / "fixtures" / "schema_v1" / "sqlite.sql"


class FakeMigrator:
    """A database in memory: ``seen_in_lock`` is what another process left by the time the
    lock is held (None: nobody else migrated)."""

    def __init__(self, target: int, applied: int | None, seen_in_lock: int | None = None) -> None:
        self.target = target
        self.where = "database 'fake'"
        self.version = applied
        self.seen_in_lock = seen_in_lock
        self.log: list[str] = []
        self.holding = False

    def applied(self) -> int | None:
        self.log.append("read" + (" locked" if self.holding else ""))
        return self.version

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.log.append("lock")
        self.holding = True
        if self.seen_in_lock is not None:
            self.version = self.seen_in_lock
        try:
            yield
        finally:
            self.holding = False
            self.log.append("unlock")

    def apply(self, version: int) -> None:
        assert self.holding, "a step runs only under the lock"
        self.log.append(f"apply {version}")

    def record(self, version: int) -> None:
        assert self.holding
        self.version = version
        self.log.append(f"record {version}")


class AsyncFakeMigrator:
    """:class:`FakeMigrator` through the async protocol."""

    def __init__(self, inner: FakeMigrator) -> None:
        self.inner = inner
        self.target = inner.target
        self.where = inner.where

    async def applied(self) -> int | None:
        await asyncio.sleep(0)
        return self.inner.applied()

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        with self.inner.locked():
            yield

    async def apply(self, version: int) -> None:
        self.inner.apply(version)

    async def record(self, version: int) -> None:
        self.inner.record(version)


def test_an_up_to_date_database_is_one_read_and_no_lock() -> None:
    migrator = FakeMigrator(target=3, applied=3)
    assert runner.migrate(migrator) == []
    assert migrator.log == ["read"]


def test_missing_steps_run_in_order_under_the_lock_each_recorded() -> None:
    migrator = FakeMigrator(target=3, applied=1)
    assert runner.migrate(migrator) == [2, 3]
    assert migrator.log == [
        "read",
        "lock",
        "read locked",
        "apply 2",
        "record 2",
        "apply 3",
        "record 3",
        "unlock",
    ]


def test_a_new_database_gets_every_step() -> None:
    migrator = FakeMigrator(target=2, applied=None)
    assert runner.migrate(migrator) == [1, 2]
    assert migrator.version == 2


def test_what_another_process_migrated_meanwhile_is_not_applied_again() -> None:
    # read 1 outside the lock; by the time the lock is held, another process is at 3
    migrator = FakeMigrator(target=3, applied=1, seen_in_lock=3)
    assert runner.migrate(migrator) == []
    assert not [entry for entry in migrator.log if entry.startswith("apply")]


@pytest.mark.parametrize("seen_in_lock", [None, 4])
def test_a_database_newer_than_the_code_is_refused(seen_in_lock: int | None) -> None:
    # newer at the first read, or only once the lock is held (a newer tether migrated meanwhile)
    migrator = FakeMigrator(target=3, applied=4 if seen_in_lock is None else 2)
    migrator.seen_in_lock = seen_in_lock
    with pytest.raises(tether.StoreError, match="database 'fake' has database migration 4") as info:
        runner.migrate(migrator)
    assert "newer than this tether knows (3); upgrade tether" in str(info.value)
    assert not [entry for entry in migrator.log if entry.startswith(("apply", "record"))]


def test_the_async_runner_runs_the_same_loop() -> None:
    inner = FakeMigrator(target=3, applied=1)
    assert asyncio.run(runner.migrate_async(AsyncFakeMigrator(inner))) == [2, 3]
    assert inner.log == [
        "read",
        "lock",
        "read locked",
        "apply 2",
        "record 2",
        "apply 3",
        "record 3",
        "unlock",
    ]
    newer = AsyncFakeMigrator(FakeMigrator(target=3, applied=5))
    with pytest.raises(tether.StoreError, match="upgrade tether"):
        asyncio.run(runner.migrate_async(newer))
    assert asyncio.run(runner.migrate_async(AsyncFakeMigrator(FakeMigrator(3, 3)))) == []


# --- SQLite on the runner --------------------------------------------------------------------


def _versions(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT version FROM tether_schema_migrations ORDER BY version")
        return [version for (version,) in rows]


def _v1_database(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(V1_SQL.read_text())
    return path


def test_a_failed_step_leaves_the_database_at_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:  # a current database, then one bad step after it
        steps = [*MIGRATIONS, ("CREATE TABLE extra (x INTEGER)", "NOT SQL AT ALL")]
        migrator = SQLiteMigrator(store._conn, store.path, store._write, store._now, steps)
        with pytest.raises(tether.StoreError, match="SQLite write"):
            runner.migrate(migrator)
    assert _versions(path) == list(range(1, len(MIGRATIONS) + 1))
    with closing(sqlite3.connect(path)) as conn:  # the step's first statement rolled back too
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in tables


def test_a_database_newer_than_the_code_is_refused_on_open(tmp_path: Path) -> None:
    path = _v1_database(tmp_path / "v1.db")
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO tether_schema_migrations VALUES (?, 0)", (len(MIGRATIONS) + 1,))
    with pytest.raises(tether.StoreError, match=f"has database migration {len(MIGRATIONS) + 1}"):
        SQLiteStore(path)
    assert _versions(path) == list(range(1, len(MIGRATIONS) + 2))  # left as it was


def _open_old(path: str, ready: Semaphore, go: Event) -> None:
    """In a spawned process: at the start signal, open the old database (migrating it) and
    write to the session it holds."""
    ready.release()
    if not go.wait(60):
        raise RuntimeError("never told to start")
    with SQLiteStore(path, timeout=30) as store:
        session = store.load("support-42")
        store.append(session.id, [{"role": "user", "content": "from a migrating process"}])


@pytest.mark.slow
def test_processes_migrating_one_old_database_at_once(tmp_path: Path) -> None:
    path = _v1_database(tmp_path / "v1.db")
    assert _versions(path) == [1]
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Semaphore(0), ctx.Event()
    workers = 4
    procs = [ctx.Process(target=_open_old, args=(str(path), ready, go)) for _ in range(workers)]
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
    # each step applied once (its record is the primary key: a second run would have failed)
    assert _versions(path) == list(range(1, len(MIGRATIONS) + 1))
    with SQLiteStore(path) as store:
        history = store.load("support-42").history
    assert sum(item.get("content") == "from a migrating process" for item in history) == workers
