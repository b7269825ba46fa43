"""Every built-in store, sync and async, runs the whole conformance suite."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.stores.file import AsyncFileStore, FileStore
from tether.stores.memory import AsyncMemoryStore, MemoryStore
from tether.stores.sqlite import AsyncSQLiteStore, SQLiteStore
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[MemoryStore]:
        with MemoryStore(clock=clock) as store:
            yield store


class TestAsyncMemoryStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[AsyncMemoryStore]:
        async with AsyncMemoryStore(clock=clock) as store:
            yield store


class TestFileStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[FileStore]:
        with FileStore(tmp_path / "sessions", clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_store, f"file:{tmp_path / 'sessions'}")


class TestAsyncFileStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[AsyncFileStore]:
        async with AsyncFileStore(tmp_path / "sessions", clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_async_store, f"file:{tmp_path / 'sessions'}")


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteStore]:
        with SQLiteStore(tmp_path / "sessions.db", clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_store, f"sqlite:///{tmp_path / 'sessions.db'}")


class TestAsyncSQLiteStore(AsyncStoreConformance):
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
