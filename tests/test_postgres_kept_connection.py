"""The PostgreSQL store keeps one pooled connection for its calls (``_take_kept``): a call that
finds it free uses it without the pool's checkout and return; a call that finds it busy takes
one from the pool; a connection a call leaves other than idle, one the server closed, and one
kept past ``_KEEP_FOR`` go back to the pool; ``close`` closes it; a pool of one keeps nothing.
Against the real server (skipped without it, a failure under CI=true)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from tether import Session, StoreError
from tether.stores.postgres import (
    AsyncPostgresStore,
    PostgresStore,
    _base_async,
    _base_sync,
    _connection,
)

from .conftest import give_back_postgres_schema, take_postgres_schema, with_options

ITEM = {"role": "user", "content": "hi"}


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = take_postgres_schema(postgres_url)
    yield name
    give_back_postgres_schema(postgres_url, name)


def _store(url: str, schema: str, **options: str) -> PostgresStore:
    return PostgresStore.from_url(with_options(url, schema=schema, **options))


def _checkouts(store: PostgresStore | AsyncPostgresStore) -> int:
    return int(store._pool.get_stats().get("requests_num", 0))


def test_calls_reuse_one_connection_without_the_pool(postgres_url: str, schema: str) -> None:
    with _store(postgres_url, schema) as store:
        created = store.create(Session(history=[ITEM]))
        kept = store._kept
        assert kept is not None
        before = _checkouts(store)
        version = created.version
        for _ in range(10):
            loaded = store.load(created.id, after=version)
            version = store.commit(created.id, loaded.version, append=[ITEM])
        assert store._kept is kept
        assert _checkouts(store) == before
        assert len(store.load(created.id).history) == 11


def test_a_call_that_finds_it_busy_takes_a_pooled_connection(
    postgres_url: str, schema: str
) -> None:
    with _store(postgres_url, schema) as store:
        created = store.create(Session())
        kept = store._kept
        before = _checkouts(store)
        assert store._kept_lock.acquire(blocking=False)  # as another thread's call would
        try:
            assert store.commit(created.id, 1, append=[ITEM]) == 2
        finally:
            store._kept_lock.release()
        assert _checkouts(store) == before + 1
        assert store._kept is kept  # untouched by the other call
        assert store.load(created.id).version == 2


def test_threads_share_the_store(postgres_url: str, schema: str) -> None:
    import threading

    with _store(postgres_url, schema, pool_max_size="3") as store:
        ids = [store.create(Session()).id for _ in range(4)]
        failures: list[BaseException] = []

        def work(session_id: str) -> None:
            try:
                for version in range(1, 26):
                    store.commit(session_id, version, append=[ITEM])
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        assert [store.load(i).version for i in ids] == [26] * 4


def test_a_connection_left_in_a_transaction_goes_back_to_the_pool(
    postgres_url: str, schema: str
) -> None:
    with _store(postgres_url, schema) as store:
        created = store.create(Session())
        with store._connection("test") as conn:
            assert conn is store._kept
            conn.execute("BEGIN")
        assert store._kept is None  # handed back: the pool rolls it back
        assert store.commit(created.id, 1, append=[ITEM]) == 2
        kept = store._kept
        assert kept is not None
        assert kept.info.transaction_status == TransactionStatus.IDLE


def test_a_failed_statement_keeps_a_usable_connection(postgres_url: str, schema: str) -> None:
    with _store(postgres_url, schema) as store:
        created = store.create(Session())
        with pytest.raises(StoreError, match="division by zero"), store._connection("test") as conn:
            conn.execute("SELECT 1 / 0")
        assert store.commit(created.id, 1, append=[ITEM]) == 2


def test_a_kept_connection_the_server_closed_is_replaced(postgres_url: str, schema: str) -> None:
    with _store(postgres_url, schema) as store:
        created = store.create(Session())
        kept = store._kept
        assert kept is not None
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (kept.info.backend_pid,))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the server's goodbye reaches the socket
            if _connection.idle_connection_alive(kept.pgconn) is False:
                break
            time.sleep(0.02)
        assert store.load(created.id).version == 1  # no error: replaced before the call
        assert store._kept is not None
        assert store._kept is not kept


def test_a_connection_kept_too_long_goes_back_to_the_pool(
    postgres_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_base_sync, "_KEEP_FOR", -1.0)
    with _store(postgres_url, schema) as store:
        created = store.create(Session())
        before = _checkouts(store)
        for version in range(1, 4):
            assert store.commit(created.id, version, append=[ITEM]) == version + 1
        assert _checkouts(store) == before + 3  # taken again for each call
        assert store._pool.get_stats()["pool_size"] <= 10


def test_close_closes_the_kept_connection(postgres_url: str, schema: str) -> None:
    store = _store(postgres_url, schema)
    store.create(Session())
    kept = store._kept
    assert kept is not None
    assert not kept.closed
    store.close()
    assert kept.closed
    assert store._kept is None


def test_a_pool_of_one_keeps_nothing(postgres_url: str, schema: str) -> None:
    with _store(postgres_url, schema, pool_max_size="1") as store:
        created = store.create(Session())
        assert store.commit(created.id, 1, append=[ITEM]) == 2
        assert store._kept is None


def test_a_forked_child_never_uses_its_parents(postgres_url: str, schema: str) -> None:
    with _store(postgres_url, schema) as store:
        store.create(Session())
        store._kept_pid = -1  # as a forked child sees its parent's
        assert store._take_kept() is None
        assert not store._kept_lock.locked()


async def test_async_calls_reuse_one_connection_and_hand_back_a_dirty_one(
    postgres_url: str, schema: str
) -> None:
    url = with_options(postgres_url, schema=schema)
    async with AsyncPostgresStore.from_url(url) as store:
        created = await store.create(Session())
        kept: Any = store._kept
        before = _checkouts(store)
        for version in range(1, 6):
            assert await store.commit(created.id, version, append=[ITEM]) == version + 1
        assert store._kept is kept
        assert _checkouts(store) == before
        async with store._connection("test") as conn:
            await conn.execute("BEGIN")
        assert store._kept is None
        assert await store.commit(created.id, 6, append=[ITEM]) == 7
        assert _base_async._KEEP_FOR > 0
