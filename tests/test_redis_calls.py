"""How the Redis store sends its script calls: on a connection of the client's pool that the
store keeps (hiredis packs the command) rather than through redis-py's ``execute_command``,
with the client's retry policy kept, a busy or forked store taking other connections, nothing
ever read as another call's reply, and redis-py's own path for the clients the direct one
does not fit (a single-connection client). Each test works in its own namespace.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
    """The pool's connections out: the one the store keeps, and any a call did not give back."""
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
        assert sent == []  # every call above went through the store's connection
        assert _in_use(store) == 1  # the one it keeps
        held = store._held
    assert held is not None
    assert _in_use(store) == 0  # close gave it back


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
            conn = store._held  # the one connection the calls share
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
            assert _in_use(store) == 1
    finally:
        admin.close()


def test_an_error_reply_leaves_the_connection_usable(redis_url: str, namespace: str) -> None:
    with _store(redis_url, namespace) as store:
        created = store.create(Session(history=[ITEM]))
        with pytest.raises(redis.ResponseError, match="Function not found"):
            store._execute("FCALL", "tether_no_such_function", 0)
        assert _in_use(store) == 1
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
        assert _in_use(store) == 1
    assert _in_use(store) == 0


async def test_async_single_connection_client_keeps_execute_command(
    redis_url: str, namespace: str
) -> None:
    async with _async_store(redis_url, namespace, single_connection_client=True) as store:
        assert not store._direct
        created = await store.create(Session(history=[ITEM]))
        assert await store.commit(created.id, 1, append=[ITEM]) == 2
        assert (await store.load(created.id)).version == 2


def test_an_interrupted_call_leaves_no_reply_for_the_next(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call interrupted after its command went out (here a KeyboardInterrupt instead of the
    read) drops the connection: the reply still on its way is never read as the next call's."""
    with _store(redis_url, namespace) as store:
        created = store.create(Session(history=[ITEM]))
        conn = store._held
        original = conn.read_response
        monkeypatch.setattr(conn, "read_response", _raise(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            store.load(created.id, last=0)  # sent; its reply is left unread
        monkeypatch.setattr(conn, "read_response", original)
        assert store.commit(created.id, 1, append=[ITEM]) == 2  # not the load's reply
        assert store.load(created.id).version == 2


def _raise(error: type[BaseException]) -> Any:
    def read(*args: Any, **kwargs: Any) -> Any:
        raise error

    return read


def test_threads_sharing_a_store_each_get_their_own_replies(redis_url: str, namespace: str) -> None:
    """Calls from several threads at once: one uses the store's connection, the others take
    pooled ones; every commit lands once, on its own session."""
    with _store(redis_url, namespace) as store:
        ids = [store.create(Session(history=[ITEM])).id for _ in range(4)]

        def turns(session_id: str) -> int:
            version = 1
            for _ in range(50):
                version = store.commit(session_id, version, append=[ITEM])
                assert store.load(session_id, after=version).version == version
            return version

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(turns, ids)) == [51] * 4
        for session_id in ids:
            assert store.load(session_id).history_len == 51


def _commit_in_child(store: RedisStore, session_id: str, out: Any) -> None:
    try:
        out.put((store.commit(session_id, 2, append=[ITEM]), id(store._held)))
    except BaseException as exc:  # reported to the parent
        out.put(repr(exc))


def test_a_forked_child_takes_a_connection_of_its_own(redis_url: str, namespace: str) -> None:
    with _store(redis_url, namespace) as store:
        created = store.create(Session(history=[ITEM]))
        assert store.commit(created.id, 1, append=[ITEM]) == 2  # the parent's connection
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_commit_in_child, args=(store, created.id, out))
        child.start()
        child.join(30)
        version, child_connection = out.get(timeout=5)
        assert version == 3
        assert child_connection != id(store._held)  # not the parent's socket
        # the parent's connection was not used by the child: its next reply is its own
        assert store.load(created.id, last=0).version == 3
        assert store.commit(created.id, 3, append=[ITEM]) == 4
