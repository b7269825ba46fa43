"""Every built-in store, sync and async, runs the whole conformance suite: the core contract
and the class of every optional ability it offers (and no ability class is left out for a
store that has the ability: see the last test)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.stores.abilities import ForksInStore, Purges, Restores
from tether.stores.file import AsyncFileStore, FileStore
from tether.stores.memory import AsyncMemoryStore, MemoryStore
from tether.stores.sqlite import AsyncSQLiteStore, SQLiteStore
from tether.testing import (
    AsyncCoreConformance,
    AsyncForkConformance,
    AsyncPurgeConformance,
    AsyncRestoreConformance,
    CoreConformance,
    FakeClock,
    ForkConformance,
    PurgeConformance,
    RestoreConformance,
)


class TestMemoryStore(CoreConformance, ForkConformance, RestoreConformance, PurgeConformance):
    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[MemoryStore]:
        with MemoryStore(clock=clock) as store:
            yield store


class TestAsyncMemoryStore(
    AsyncCoreConformance, AsyncForkConformance, AsyncRestoreConformance, AsyncPurgeConformance
):
    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[AsyncMemoryStore]:
        async with AsyncMemoryStore(clock=clock) as store:
            yield store


class TestFileStore(CoreConformance, RestoreConformance, PurgeConformance):
    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[FileStore]:
        with FileStore(tmp_path / "sessions", clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_store, f"file:{tmp_path / 'sessions'}")


class TestAsyncFileStore(AsyncCoreConformance, AsyncRestoreConformance, AsyncPurgeConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[AsyncFileStore]:
        async with AsyncFileStore(tmp_path / "sessions", clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_async_store, f"file:{tmp_path / 'sessions'}")


class TestSQLiteStore(CoreConformance, ForkConformance, RestoreConformance, PurgeConformance):
    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteStore]:
        with SQLiteStore(tmp_path / "sessions.db", clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_store, f"sqlite:///{tmp_path / 'sessions.db'}")


class TestAsyncSQLiteStore(
    AsyncCoreConformance, AsyncForkConformance, AsyncRestoreConformance, AsyncPurgeConformance
):
    @pytest.fixture
    async def store(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[AsyncSQLiteStore]:
        async with AsyncSQLiteStore(tmp_path / "sessions.db", clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_async_store, f"sqlite:///{tmp_path / 'sessions.db'}")


def test_every_built_in_store_has_the_framework_contract_of_its_own() -> None:
    """The suite skips the framework clauses for a store without these methods; no built-in
    store may be one (so none of them skips)."""
    import inspect

    from tether.stores.base import PROTECTED_METHODS, AsyncStore, Store
    from tether.stores.kv_async import AsyncKVStore
    from tether.stores.kv_sync import KVStore
    from tether.stores.postgres_async import AsyncPostgresStore
    from tether.stores.postgres_sync import PostgresStore
    from tether.stores.redis_async import AsyncRedisStore
    from tether.stores.redis_sync import RedisStore

    for cls in (MemoryStore, FileStore, SQLiteStore, KVStore, RedisStore, PostgresStore):
        for name in ("append", "replace_tail", "items_by_key"):
            own = (name, PROTECTED_METHODS[name])  # the public method or its protected one
            assert any(getattr(cls, n) is not getattr(Store, n) for n in own), (cls, name)
        assert "changes" in inspect.signature(cls.replace_history).parameters, cls
    for acls in (AsyncKVStore, AsyncRedisStore, AsyncPostgresStore):
        for name in ("append", "replace_tail", "items_by_key"):
            own = (name, PROTECTED_METHODS[name])
            assert any(getattr(acls, n) is not getattr(AsyncStore, n) for n in own), (acls, name)
        assert "changes" in inspect.signature(acls.replace_history).parameters, acls


_ABILITY_CLASSES = {
    ForksInStore: (ForkConformance, AsyncForkConformance),
    Restores: (RestoreConformance, AsyncRestoreConformance),
    Purges: (PurgeConformance, AsyncPurgeConformance),
}


@pytest.mark.parametrize(
    ("test_class", "store_class", "args"),
    [
        (TestMemoryStore, MemoryStore, ()),
        (TestAsyncMemoryStore, AsyncMemoryStore, ()),
        (TestFileStore, FileStore, ("sessions",)),
        (TestAsyncFileStore, AsyncFileStore, ("sessions",)),
        (TestSQLiteStore, SQLiteStore, ("sessions.db",)),
        (TestAsyncSQLiteStore, AsyncSQLiteStore, ("sessions.db",)),
    ],
)
def test_each_store_runs_the_class_of_every_ability_it_offers(
    test_class: type, store_class: Any, args: tuple[str, ...], tmp_path: Path
) -> None:
    """An ability class is in a store's test class exactly when the store has the ability,
    so none of the ability clauses above skips and none is left out."""
    store = store_class(*(tmp_path / a for a in args))
    try:
        for ability, classes in _ABILITY_CLASSES.items():
            offered = isinstance(store, ability)
            ran = any(issubclass(test_class, c) for c in classes)
            assert ran == offered, (test_class.__name__, ability.__name__)
    finally:
        if hasattr(store, "sync"):
            store.sync.close()
        else:
            store.close()
