"""How the Redis store sends its script calls: straight through a pooled connection (hiredis
packs the command) rather than redis-py's ``execute_command``, with the client's retry policy
kept, every connection given back to the pool, and redis-py's own path for the clients the
direct one does not fit (a single-connection client). Each test works in its own namespace.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from tether import Session, StoreError
from tether.stores.redis import AsyncRedisStore, RedisStore
from tether.stores.redis import store_async as redis_async
from tether.stores.redis import store_sync as redis_sync

from .conftest import wipe_redis_namespace

ITEM = {"role": "user", "content": "hi"}


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex}"
    yield name
    wipe_redis_namespace(redis_url, name)


def _store(redis_url: str, namespace: str, **client: Any) -> RedisStore:
    built = redis.Redis.from_url(
        redis_url.split("?", 1)[0], **redis_sync.client_options(), **client
    )
    return RedisStore(built, namespace=namespace, close_client=True)


def _in_use(store: RedisStore | AsyncRedisStore) -> int:
    pool: Any = store.client.connection_pool
    return len(pool._in_use_connections)


def test_script_calls_bypass_execute_command(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _store(redis_url, namespace) as store:
        assert store._direct
        sent: list[Any] = []
        monkeypatch.setattr(store.client, "execute_command", lambda *a, **k: sent.append(a))
        created = store.create(Session(history=[ITEM]))
        assert store.commit(created.id, 1, append=[ITEM]) == 2
        loaded = store.load(created.id, after=1)
        assert [item["seq"] for item in loaded.history] == [2]
        assert sent == []  # every call above went through the pooled connection
        assert _in_use(store) == 0  # and gave it back


def test_a_single_connection_client_keeps_execute_command(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _store(redis_url, namespace, single_connection_client=True) as store:
        assert not store._direct
        names: list[Any] = []
        original: Any = store.client.execute_command

        def spy(*args: Any, **options: Any) -> Any:
            names.append(args[0])
            return original(*args, **options)

        monkeypatch.setattr(store.client, "execute_command", spy)
        created = store.create(Session(history=[ITEM]))
        assert store.commit(created.id, 1, append=[ITEM]) == 2
        assert store.load(created.id).version == 2
        assert names.count("FCALL") + names.count("EVALSHA") >= 3


def test_a_connection_closed_under_a_call_is_retried_and_the_commit_applied_once(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server closes the pooled connection after the pool handed it out (the pool's
    own check has passed): the send or the read fails with a connection error, the client's
    retry reconnects and sends again, and the commit is applied once."""
    admin = redis.Redis.from_url(redis_url.split("?", 1)[0])
    try:
        with _store(redis_url, namespace) as store:
            created = store.create(Session(history=[ITEM]))
            pool: Any = store.client.connection_pool
            (conn,) = pool._available_connections  # the one connection the calls share
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            original = conn.send_packed_command
            sends: list[int] = []

            def close_first(command: Any, check_health: bool = True) -> Any:
                if b"FCALL" not in b"".join(command)[:32]:
                    return original(command, check_health)  # the reconnection's handshake
                sends.append(1)
                if len(sends) == 1:
                    admin.client_kill_filter(_id=client_id)
                return original(command, check_health)

            monkeypatch.setattr(conn, "send_packed_command", close_first)
            assert store.commit(created.id, 1, append=[ITEM]) == 2
            assert len(sends) == 2  # the failed attempt and the retry
            loaded = store.load(created.id)
            assert (loaded.version, [i["seq"] for i in loaded.history]) == (2, [1, 2])
            assert _in_use(store) == 0
    finally:
        admin.close()


def test_an_error_reply_leaves_the_connection_usable(redis_url: str, namespace: str) -> None:
    with _store(redis_url, namespace) as store:
        created = store.create(Session(history=[ITEM]))
        with pytest.raises(redis.ResponseError, match="Function not found"):
            store._execute("FCALL", "tether_no_such_function", 0)
        assert _in_use(store) == 0
        # the same pooled connection serves the next call, its reply not shifted by one
        assert store.load(created.id).version == 1
        with pytest.raises(StoreError):
            store._guarded("probe", lambda: store._execute("HGET", "a", "b", "c"))
        assert store.commit(created.id, 1, append=[ITEM]) == 2


def _async_store(redis_url: str, namespace: str, **client: Any) -> AsyncRedisStore:
    built = redis.asyncio.Redis.from_url(
        redis_url.split("?", 1)[0], **redis_async.client_options(), **client
    )
    return AsyncRedisStore(built, namespace=namespace, close_client=True)


async def test_async_script_calls_bypass_execute_command(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _async_store(redis_url, namespace) as store:
        assert store._direct
        sent: list[Any] = []

        async def refuse(*args: Any, **options: Any) -> Any:
            sent.append(args)

        monkeypatch.setattr(store.client, "execute_command", refuse)
        created = await store.create(Session(history=[ITEM]))
        assert await store.commit(created.id, 1, append=[ITEM]) == 2
        with pytest.raises(redis.ResponseError, match="Function not found"):
            await store._execute("FCALL", "tether_no_such_function", 0)
        assert (await store.load(created.id, after=1)).version == 2
        assert sent == []
        assert _in_use(store) == 0


async def test_async_single_connection_client_keeps_execute_command(
    redis_url: str, namespace: str
) -> None:
    async with _async_store(redis_url, namespace, single_connection_client=True) as store:
        assert not store._direct
        created = await store.create(Session(history=[ITEM]))
        assert await store.commit(created.id, 1, append=[ITEM]) == 2
        assert (await store.load(created.id)).version == 2
