"""The whole conformance suite on encrypted stores: EncryptedStore over every built-in store.

Each class wraps one store (memory, file, SQLite, Redis, PostgreSQL, NATS; sync and async) in
``EncryptedStore`` / ``AsyncEncryptedStore``; the multi-process clauses open the same store in
other processes by URL, the keyring in the environment variable the URL names.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.encryption import AsyncEncryptedStore, EncryptedStore, Keyring, TamperedCiphertext
from tether.schema import schema
from tether.stores.file import AsyncFileStore, FileStore
from tether.stores.memory import AsyncMemoryStore, MemoryStore
from tether.stores.sqlite import AsyncSQLiteStore, SQLiteStore
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance

from .conftest import (
    give_back_postgres_schema,
    require_module,
    take_postgres_schema,
    wipe_redis_namespace,
    with_options,
)

KEYS_ENV = "TETHER_TEST_ENCRYPTION_KEYS"
RING = Keyring({"k2": Keyring.new_key(), "k1": Keyring.new_key()}, current="k2")
# the other processes of the multi-process clauses read the same keyring from the environment
os.environ[KEYS_ENV] = RING.to_text()


def _encrypted_url(url: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}encryption_keys_env={KEYS_ENV}"


def _content_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    new_version = schema.current + 1

    def item_step(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "item": {**row["item"], "migrated": True}}

    monkeypatch.setattr(schema, "current", new_version)
    monkeypatch.setitem(schema.item_migrations, new_version - 1, item_step)


class _SyncClause:
    """An item migration runs inside the wrapped store, on the stored row, whose item is the
    ciphertext envelope: one that edits an item's content (as the suite's clause of this name
    does) cannot reach the item, so the encrypted store refuses the edited envelope rather
    than return anything it cannot verify. This replaces that clause (docs/encryption.md)."""

    def test_older_schema_version_is_migrated_and_written_back(
        self, store: tether.Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.create(tether.Session(id="old", metadata={"v": 1}, history=[{"content": "a"}]))
        _content_migration(monkeypatch)
        with pytest.raises(TamperedCiphertext) as info:
            store.load("old")
        assert info.value.session_id == "old"
        assert info.value.place == "history item seq 1"
        monkeypatch.undo()
        assert store.load("old").history[0]["content"] == "a"


class _AsyncClause:
    async def test_older_schema_version_is_migrated_and_written_back(
        self, store: tether.AsyncStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await store.create(tether.Session(id="old", history=[{"content": "a"}]))
        _content_migration(monkeypatch)
        with pytest.raises(TamperedCiphertext) as info:
            await store.load("old")
        assert info.value.session_id == "old"
        assert info.value.place == "history item seq 1"
        monkeypatch.undo()
        assert (await store.load("old")).history[0]["content"] == "a"


# --- memory, file, SQLite --------------------------------------------------------------------


class TestEncryptedMemoryStore(_SyncClause, StoreConformance):
    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[EncryptedStore]:
        with EncryptedStore(MemoryStore(clock=clock), RING) as store:
            yield store


class TestAsyncEncryptedMemoryStore(_AsyncClause, AsyncStoreConformance):
    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[AsyncEncryptedStore]:
        async with AsyncEncryptedStore(AsyncMemoryStore(clock=clock), RING) as store:
            yield store


class TestEncryptedFileStore(_SyncClause, StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[EncryptedStore]:
        with EncryptedStore(FileStore(tmp_path / "sessions", clock=clock), RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(tether.open_store, _encrypted_url(f"file:{tmp_path / 'sessions'}"))


class TestAsyncEncryptedFileStore(_AsyncClause, AsyncStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[AsyncEncryptedStore]:
        inner = AsyncFileStore(tmp_path / "sessions", clock=clock)
        async with AsyncEncryptedStore(inner, RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        url = _encrypted_url(f"file:{tmp_path / 'sessions'}")
        return functools.partial(tether.open_async_store, url)


class TestEncryptedSQLiteStore(_SyncClause, StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[EncryptedStore]:
        with EncryptedStore(SQLiteStore(tmp_path / "sessions.db", clock=clock), RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        url = _encrypted_url(f"sqlite:///{tmp_path / 'sessions.db'}")
        return functools.partial(tether.open_store, url)


class TestAsyncEncryptedSQLiteStore(_AsyncClause, AsyncStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[AsyncEncryptedStore]:
        inner = AsyncSQLiteStore(tmp_path / "sessions.db", clock=clock)
        async with AsyncEncryptedStore(inner, RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        url = _encrypted_url(f"sqlite:///{tmp_path / 'sessions.db'}")
        return functools.partial(tether.open_async_store, url)


# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    require_module("redis", "redis")
    name = f"t{uuid.uuid4().hex}"
    yield name
    wipe_redis_namespace(redis_url, name)


class TestEncryptedRedisStore(_SyncClause, StoreConformance):
    @pytest.fixture
    def store(self, redis_url: str, namespace: str, clock: FakeClock) -> Iterator[EncryptedStore]:
        from tether.stores.redis_sync import RedisStore

        inner = RedisStore.from_url(with_options(redis_url, namespace=namespace), clock=clock)
        with EncryptedStore(inner, RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, redis_url: str, namespace: str) -> Callable[[], Any]:
        url = _encrypted_url(with_options(redis_url, namespace=namespace))
        return functools.partial(tether.open_store, url)


class TestAsyncEncryptedRedisStore(_AsyncClause, AsyncStoreConformance):
    @pytest.fixture
    async def store(
        self, redis_url: str, namespace: str, clock: FakeClock
    ) -> AsyncIterator[AsyncEncryptedStore]:
        from tether.stores.redis_async import AsyncRedisStore

        inner = AsyncRedisStore.from_url(with_options(redis_url, namespace=namespace), clock=clock)
        async with AsyncEncryptedStore(inner, RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, redis_url: str, namespace: str) -> Callable[[], Any]:
        url = _encrypted_url(with_options(redis_url, namespace=namespace))
        return functools.partial(tether.open_async_store, url)


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """An empty, migrated schema from conftest's pool (as test_postgres_store.py's conformance
    classes take): the suite only reads and writes sessions, so a fresh schema a test (its
    migrations, then its DROP) would be most of what the test costs."""
    require_module("psycopg", "postgres")
    name = take_postgres_schema(postgres_url)
    yield name
    give_back_postgres_schema(postgres_url, name)


class TestEncryptedPostgresStore(_SyncClause, StoreConformance):
    @pytest.fixture
    def store(
        self, postgres_url: str, pg_schema: str, clock: FakeClock
    ) -> Iterator[EncryptedStore]:
        from tether.stores.postgres_sync import PostgresStore

        inner = PostgresStore.from_url(with_options(postgres_url, schema=pg_schema), clock=clock)
        with EncryptedStore(inner, RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, postgres_url: str, pg_schema: str) -> Callable[[], Any]:
        url = _encrypted_url(with_options(postgres_url, schema=pg_schema))
        return functools.partial(tether.open_store, url)


class TestAsyncEncryptedPostgresStore(_AsyncClause, AsyncStoreConformance):
    @pytest.fixture
    async def store(
        self, postgres_url: str, pg_schema: str, clock: FakeClock
    ) -> AsyncIterator[AsyncEncryptedStore]:
        from tether.stores.postgres_async import AsyncPostgresStore

        url = with_options(postgres_url, schema=pg_schema)
        async with AsyncEncryptedStore(
            AsyncPostgresStore.from_url(url, clock=clock), RING
        ) as store:
            yield store

    @pytest.fixture
    def store_opener(self, postgres_url: str, pg_schema: str) -> Callable[[], Any]:
        url = _encrypted_url(with_options(postgres_url, schema=pg_schema))
        return functools.partial(tether.open_async_store, url)


# --- NATS JetStream ----------------------------------------------------------------------------


def _nats_store_url(server: str, bucket: str) -> str:
    return f"{server}/{bucket}?chunk_items=8"


class TestEncryptedNatsStore(_SyncClause, StoreConformance):
    @pytest.fixture
    def store(
        self, nats_server: str, nats_bucket: str, clock: FakeClock
    ) -> Iterator[EncryptedStore]:
        from tether.stores.nats_sync import NatsStore

        inner = NatsStore(nats_server, nats_bucket, clock=clock, chunk_items=8)
        with EncryptedStore(inner, RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, nats_server: str, nats_bucket: str) -> Callable[[], Any]:
        url = _encrypted_url(_nats_store_url(nats_server, nats_bucket))
        return functools.partial(tether.open_store, url)


class TestAsyncEncryptedNatsStore(_AsyncClause, AsyncStoreConformance):
    # as tests/test_nats_store.py's async class: the sync class above races at full size
    # across OS processes on the same kit; this one proves the async path in less time
    claim_rounds = 50
    appends_per_writer = 50

    @pytest.fixture
    async def store(
        self, nats_server: str, nats_bucket: str, clock: FakeClock
    ) -> AsyncIterator[AsyncEncryptedStore]:
        from tether.stores.nats_async import AsyncNatsStore

        inner = AsyncNatsStore(nats_server, nats_bucket, clock=clock, chunk_items=8)
        async with AsyncEncryptedStore(inner, RING) as store:
            yield store

    @pytest.fixture
    def store_opener(self, nats_server: str, nats_bucket: str) -> Callable[[], Any]:
        url = _encrypted_url(_nats_store_url(nats_server, nats_bucket))
        return functools.partial(tether.open_async_store, url)
