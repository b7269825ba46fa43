"""The Redis store: the whole conformance suite (sync and async) and what the Redis layout adds.

Every test works in its own namespace (``t<uuid hex>``) and deletes that namespace's keys
afterwards (SCAN MATCH on the namespace's own prefix); nothing here flushes a database. The
server comes from ``TETHER_TEST_REDIS_URL`` (default: the local Redis): the tests skip when it
does not answer, and fail instead under ``CI=true``. The fault tests start a throwaway
``redis-server`` of their own (skipped when the binary is missing).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

import tether
from tether import (
    ConfigurationError,
    CorruptSession,
    InvalidRequest,
    Lease,
    Session,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    _core,
)
from tether._time import to_micros
from tether.stores.redis import AsyncRedisStore, RedisStore, _codec, _functions, _keys, _options
from tether.stores.redis import _scripts as lua
from tether.stores.redis import store_async as redis_async
from tether.stores.redis import store_sync as redis_sync
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance

from .conftest import wipe_redis_namespace, with_options

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex}"
    yield name
    wipe_redis_namespace(redis_url, name)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client beside the store's, to look at the keys."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _items(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{prefix}{i}"} for i in range(count)]


# --- the conformance suite ---------------------------------------------------------------------


class TestRedisStore(StoreConformance):
    @pytest.fixture
    def store(self, redis_url: str, namespace: str, clock: FakeClock) -> Iterator[RedisStore]:
        with RedisStore.from_url(
            with_options(redis_url, namespace=namespace), clock=clock
        ) as store:
            yield store

    @pytest.fixture
    def store_opener(self, redis_url: str, namespace: str) -> Callable[[], Any]:
        return functools.partial(tether.open_store, with_options(redis_url, namespace=namespace))


class TestAsyncRedisStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(
        self, redis_url: str, namespace: str, clock: FakeClock
    ) -> AsyncIterator[AsyncRedisStore]:
        url = with_options(redis_url, namespace=namespace)
        async with AsyncRedisStore.from_url(url, clock=clock) as store:
            yield store

    @pytest.fixture
    def store_opener(self, redis_url: str, namespace: str) -> Callable[[], Any]:
        return functools.partial(
            tether.open_async_store, with_options(redis_url, namespace=namespace)
        )


class TestRedisStoreWithEvalsha(TestRedisStore):
    """The whole suite again on the path a server without functions (Redis 6.2) takes."""

    @pytest.fixture
    def store(self, redis_url: str, namespace: str, clock: FakeClock) -> Iterator[RedisStore]:
        with RedisStore.from_url(
            with_options(redis_url, namespace=namespace), clock=clock
        ) as store:
            store.use_functions = False
            yield store


class TestAsyncRedisStoreWithEvalsha(TestAsyncRedisStore):
    @pytest.fixture
    async def store(
        self, redis_url: str, namespace: str, clock: FakeClock
    ) -> AsyncIterator[AsyncRedisStore]:
        url = with_options(redis_url, namespace=namespace)
        async with AsyncRedisStore.from_url(url, clock=clock) as store:
            store.use_functions = False
            yield store


# --- helpers: counting connections and a throwaway server --------------------------------------


class Wire:
    """What went over the wire: packets sent, replies read, and the commands in the packets."""

    def __init__(self) -> None:
        self.sends = 0
        self.reads = 0
        self.commands: list[str] = []
        self.lose_next_reply = False

    def reset(self) -> None:
        self.sends, self.reads, self.commands = 0, 0, []

    def sent(self, packet: bytes | list[bytes] | tuple[bytes, ...]) -> None:
        """Count one packet and note the name of every command in it (RESP arrays)."""
        self.sends += 1
        data = packet if isinstance(packet, bytes) else b"".join(packet)
        pos = 0
        while pos < len(data):
            end = data.index(b"\r\n", pos)
            count, pos = int(data[pos + 1 : end]), end + 2
            for index in range(count):
                end = data.index(b"\r\n", pos)
                size, pos = int(data[pos + 1 : end]), end + 2
                if index == 0:
                    self.commands.append(data[pos : pos + size].decode().upper())
                pos += size + 2

    def read(self) -> None:
        self.reads += 1
        if self.lose_next_reply and self.commands[-1:] in (["FCALL"], ["EVALSHA"]):
            # the server ran the script and answered; the answer is lost on the way back
            self.lose_next_reply = False
            raise redis.ConnectionError("simulated: connection lost before the reply arrived")

    def one_round_trip(self) -> list[str]:
        """The commands of the one packet sent, after checking nothing else went out and each
        of its replies was read (a MULTI/EXEC packet has one reply per command)."""
        assert self.sends == 1, f"{self.sends} packets sent: {self.commands}"
        assert self.reads == len(self.commands), f"{self.reads} replies for {self.commands}"
        return self.commands


WIRE = Wire()


class CountingConnection(redis.Connection):
    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        WIRE.sent(command)
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().read_response(*args, **kwargs)
        WIRE.read()
        return response


class AsyncCountingConnection(redis.asyncio.Connection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        WIRE.sent(command)
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = await super().read_response(*args, **kwargs)
        WIRE.read()
        return response


def counting_store(url: str, namespace: str, **kwargs: Any) -> RedisStore:
    """A store whose client counts what it sends and reads (the store's own client settings)."""
    pool = redis.ConnectionPool.from_url(
        url.split("?", 1)[0], connection_class=CountingConnection, **redis_sync.client_options()
    )
    client = redis.Redis.from_pool(pool)  # the client owns the pool: closing it closes both
    return RedisStore(client, namespace=namespace, close_client=True, **kwargs)


def async_counting_store(url: str, namespace: str, **kwargs: Any) -> AsyncRedisStore:
    pool = redis.asyncio.ConnectionPool.from_url(
        url.split("?", 1)[0],
        connection_class=AsyncCountingConnection,
        **redis_async.client_options(),
    )
    client = redis.asyncio.Redis.from_pool(pool)  # closing the client closes the pool
    return AsyncRedisStore(client, namespace=namespace, close_client=True, **kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayRedis:
    """A redis-server of this test's own, on a free port, keeping nothing on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"no redis-server binary at {REDIS_SERVER} to run a throwaway server")
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.signal(signal.SIGCONT)  # in case a test left it stopped
        server.kill()


@pytest.fixture
def store(redis_url: str, namespace: str) -> Iterator[RedisStore]:
    """A plain store on the test Redis, on Redis's own clock."""
    with RedisStore.from_url(with_options(redis_url, namespace=namespace)) as store:
        yield store


def _members(raw: redis.Redis, key: str) -> list[str]:
    members: list[bytes] = raw.zrange(key, 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in members]


def _index_mentions(raw: redis.Redis, keys: _keys.Keys, session_id: str) -> list[str]:
    """Every index entry and ix:who field that names ``session_id``."""
    found = [
        f"{key}: {member}"
        for key in keys.index[:4]
        for member in _members(raw, key)
        if member.endswith(":" + session_id)
    ]
    if raw.hexists(keys.index[4], session_id):
        found.append(f"{keys.index[4]}: {session_id}")
    return found


# --- URLs and construction ---------------------------------------------------------------------


def test_url_options_reach_the_store_and_its_client(redis_url: str) -> None:
    url = with_options(
        redis_url, namespace="app-1", ttl="90", socket_timeout="3.5", socket_connect_timeout="1"
    )
    with RedisStore.from_url(url) as store:
        assert store.namespace == "app-1"
        assert store.ttl_ms == 90_000
        kwargs = store.client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (3.5, 1.0)
    with RedisStore.from_url(redis_url) as store:  # defaults: a few seconds, no ttl
        assert (store.namespace, store.ttl_ms) == ("default", 0)
        kwargs = store.client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == _options.SOCKET_TIMEOUT
        assert kwargs["socket_connect_timeout"] == _options.CONNECT_TIMEOUT


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost/0?nmespace=x", "valid options for redis: namespace, "
         "socket_connect_timeout, socket_timeout, ttl"),
        ("rediss://localhost/0?db=3", "valid options for rediss: namespace"),
        ("redis://localhost/0?ttl=soon", "option ttl"),
        ("redis://localhost/0?ttl=-5", "option ttl"),
        ("redis://localhost/0?socket_timeout=0", "socket_timeout"),
        ("redis://localhost/0?namespace=a%20b", "namespace 'a b' is not valid"),
        ("redis://localhost/0?namespace=x%7By%7D", "is not valid"),
        ("redis://localhost/0?namespace=*", "is not valid"),
        ("redis://localhost/0?namespace=", "is not valid"),
        ("redis://localhost/sessions", "database number"),
        ("http://localhost/0", "redis:// or rediss://"),
    ],
)  # fmt: skip
def test_bad_urls_raise_configuration_errors(url: str, message: str) -> None:
    for cls in (RedisStore, AsyncRedisStore):
        with pytest.raises(ConfigurationError, match=message.replace("*", r"\*")):
            cls.from_url(url)


def test_registry_opens_redis_urls_without_connecting() -> None:
    # nothing listens on port 1: building a store does no I/O, the first call would
    with tether.open_store("redis://127.0.0.1:1/0?namespace=reg") as store:
        assert isinstance(store, RedisStore)
        assert store.namespace == "reg"
    store_async = tether.open_async_store("rediss://user:secret@127.0.0.1:1/2?namespace=reg")
    assert isinstance(store_async, AsyncRedisStore)
    pool = store_async.client.connection_pool
    assert pool.connection_class is redis.asyncio.SSLConnection
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "secret")


def test_store_from_an_existing_client_leaves_it_open(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with RedisStore(client, namespace=namespace, ttl=timedelta(minutes=5)) as store:
        assert store.ttl_ms == 300_000
        store.create(Session(id="mine"))
    assert client.ping()  # the caller's client: the store did not close it
    client.close()
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisStore(client, namespace=namespace, ttl=-1)
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisStore(client, namespace="no/slash")


def test_a_client_that_decodes_replies_works_too(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with RedisStore(client, namespace=namespace, close_client=True) as store:
        created = store.create(Session(owner="ada", history=_items(2)))
        assert store.load(created.id) == created
        lease = store.claim(created.id, "w", 60)
        assert store.commit(created.id, 1, append=_items(1), lease=lease) == 2
        page = store.list(owner="ada", limit=1)
        assert [h.id for h in page.sessions] == [created.id]
        with pytest.raises(tether.AlreadyClaimed):
            store.claim(created.id, "other", 60)


async def test_async_store_from_an_existing_client(redis_url: str, namespace: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    async with AsyncRedisStore(client, namespace=namespace) as store:
        created = await store.create(Session(history=_items(2)))
        assert (await store.load(created.id)) == created
    assert await client.ping()
    await client.aclose()


# --- namespaces and key layout -----------------------------------------------------------------


def test_namespaces_never_see_each_other(redis_url: str, namespace: str, raw: redis.Redis) -> None:
    other = namespace + "x"  # a namespace that extends the first one's name
    try:
        with (
            RedisStore.from_url(with_options(redis_url, namespace=namespace)) as a,
            RedisStore.from_url(with_options(redis_url, namespace=other)) as b,
        ):
            a.create(Session(id="shared", owner="ada", state={"app": "a"}, history=_items(1)))
            b.create(Session(id="shared", owner="ada", state={"app": "b"}, history=_items(3)))
            b.create(Session(id="only-b", owner="ada"))
            assert a.load("shared").state == {"app": "a"}
            assert b.load("shared").history_len == 3
            assert not a.exists("only-b")
            assert [h.id for h in a.list(owner="ada").sessions] == ["shared"]
            assert [h.id for h in b.list(owner="ada").sessions] == ["only-b", "shared"]
            lease = a.claim("shared", "worker", 60)
            b.commit("shared", 1, append=_items(1))  # b's session is not claimed
            assert a.delete("shared", expected_version=1, lease=lease)
            assert b.load("shared").version == 2
            a_keys = {k.decode() for k in raw.scan_iter(match=a.keys.pattern)}
            b_keys = {k.decode() for k in raw.scan_iter(match=b.keys.pattern)}
            assert a_keys.isdisjoint(b_keys)
            assert all(key.startswith(f"tether:{{{namespace}}}:") for key in a_keys)
            assert all(key.startswith(f"tether:{{{other}}}:") for key in b_keys)
            with pytest.raises(tether.LeaseLost):
                a.renew(lease, 60)
    finally:
        wipe_redis_namespace(redis_url, other)


def test_key_layout_one_slot_and_one_element_per_item(store: RedisStore, raw: redis.Redis) -> None:
    created = store.create(
        Session(owner="José 🙂", agent="support", metadata={"tier": "gold"}, history=_items(3))
    )
    store.commit(created.id, 1, append=_items(2, "b"))
    header, items, meta = store.keys.session(created.id)
    assert raw.type(header) == b"hash"
    assert raw.type(items) == b"list"
    assert raw.type(meta) == b"hash"
    for key in store.keys.index[:4]:
        assert raw.type(key) == b"zset"
    # one element per item, oldest first, each with its seq: a commit only appends
    stored = [tether._json.loads(x) for x in raw.lrange(items, 0, -1)]
    assert [(i["seq"], i["item"]["content"]) for i in stored] == [
        (1, "m0"), (2, "m1"), (3, "m2"), (4, "b0"), (5, "b1")
    ]  # fmt: skip
    assert raw.hget(meta, "tier") == b'"gold"'
    assert raw.hget(header, "lease_token") == b"null"
    # every key of the namespace hashes to one cluster slot: one script may touch them all
    every_key = [k.decode() for k in raw.scan_iter(match=store.keys.pattern)]
    assert {redis.crc.key_slot(k.encode()) for k in every_key} == {
        redis.crc.key_slot(store.keys.base.encode())
    }
    # owner and agent appear in index entries only hex-encoded
    owner_entries = _members(raw, store.keys.index[1])
    assert owner_entries[0].startswith("José 🙂".encode().hex() + ":")


def test_index_prefixes_separate_look_alike_owners(store: RedisStore) -> None:
    for session_id, owner in [("a", "a"), ("ab", "ab"), ("empty", ""), ("none", None)]:
        store.create(Session(id=session_id, owner=owner, agent=owner))
    assert [h.id for h in store.list(owner="a").sessions] == ["a"]
    assert [h.id for h in store.list(agent="ab").sessions] == ["ab"]
    assert [h.id for h in store.list(owner="").sessions] == ["empty"]
    assert [h.id for h in store.list(owner="b").sessions] == []
    assert len(store.list().sessions) == 4
    store.commit("a", 1, changes={"owner": "b", "status": "running"})
    assert [h.id for h in store.list(owner="a").sessions] == []
    assert [h.id for h in store.list(owner="b").sessions] == ["a"]
    assert [h.id for h in store.list(status="running").sessions] == ["a"]
    assert [h.id for h in store.list(status=["running", "error"], agent="a").sessions] == ["a"]


# --- one round trip ----------------------------------------------------------------------------


SCRIPT = ["FCALL"]


def test_every_call_is_one_round_trip(redis_url: str, namespace: str) -> None:
    """Counted on the connection: one packet sent per call, and only its replies read."""
    with counting_store(redis_url, namespace) as store:
        created = store.create(Session(owner="o", history=_items(2)))
        store.commit(created.id, 1, append=_items(1))  # warm: every script loaded, pool open
        lease = store.claim(created.id, "w", 60)
        store.release(lease)
        store.list(owner="o")
        store.exists(created.id)
        store.load(created.id, last=1)
        store.delete(store.create(Session()).id)
        version = 2
        claimed: list[Lease] = []
        calls: list[tuple[str, list[str], Callable[[], Any]]] = [
            ("commit", SCRIPT, lambda: store.commit(created.id, version, append=_items(2),
                                                    changes={"metadata": {"k": 1},
                                                             "state": {"turn": version}})),
            ("load", SCRIPT, lambda: store.load(created.id)),
            ("load last 100", SCRIPT, lambda: store.load(created.id, last=100)),
            ("load last 3", SCRIPT, lambda: store.load(created.id, last=3)),
            ("load header", SCRIPT, lambda: store.load(created.id, last=0)),
            ("load after", SCRIPT, lambda: store.load(created.id, after=3)),
            ("list", SCRIPT, lambda: store.list(owner="o", metadata={"k": 1})),
            ("exists", SCRIPT, lambda: store.exists(created.id)),
            ("create", SCRIPT, lambda: store.create(Session(history=_items(3)))),
            ("claim", SCRIPT, lambda: claimed.append(store.claim(created.id, "w", 60))),
        ]  # fmt: skip
        for what, expected, call in calls:
            WIRE.reset()
            call()
            assert WIRE.one_round_trip() == expected, what
            version += what == "commit"
        (lease,) = claimed  # the lease the measured claim took
        leased: list[tuple[str, Callable[[], Any]]] = [
            ("leased commit", lambda: store.commit(created.id, 3, append=_items(1), lease=lease)),
            ("renew", lambda: store.renew(lease, 60)),
            ("release", lambda: store.release(lease)),
        ]  # fmt: skip
        for what, call in leased:
            WIRE.reset()
            call()
            assert WIRE.one_round_trip() == SCRIPT, what


def test_a_state_commit_keeps_the_runtime_block_in_one_round_trip(
    redis_url: str, namespace: str
) -> None:
    """The commit script merges the stored state["_tether"] into an application's new state."""
    block = {"reviews": [{"id": "rv_1", "note": 'a "}" and {}'}], "n": 2**63 - 1}
    with counting_store(redis_url, namespace) as store:
        created = store.create(Session())
        with _core.runtime_writes():
            store.commit(created.id, 1, changes={"state": {"_tether": block}})
        store.commit(created.id, 2)  # warm: the script is loaded
        WIRE.reset()
        store.commit(created.id, 3, changes={"state": {"turn": 3}})
        assert WIRE.one_round_trip() == SCRIPT
        assert store.load(created.id, last=0).state == {"turn": 3, "_tether": block}


async def test_every_async_call_is_one_round_trip(redis_url: str, namespace: str) -> None:
    async with async_counting_store(redis_url, namespace) as store:
        created = await store.create(Session(history=_items(2)))
        await store.commit(created.id, 1, append=_items(1))
        await store.load(created.id)
        await store.load(created.id, after=1)
        held = 3
        for version in (2, 3, 4):
            WIRE.reset()
            assert await store.commit(created.id, version, append=_items(2)) == version + 1
            assert WIRE.one_round_trip() == SCRIPT
            WIRE.reset()
            assert len((await store.load(created.id, after=held)).history) == 2
            held += 2
            assert WIRE.one_round_trip() == SCRIPT
            WIRE.reset()
            assert (await store.load(created.id)).version == version + 1
            assert WIRE.one_round_trip() == SCRIPT


def test_a_fork_reading_its_parents_items_loads_in_one_round_trip(
    redis_url: str, namespace: str
) -> None:
    """The load script reads the fork link with the header: no second call for a fork."""
    with counting_store(redis_url, namespace) as store:
        parent = store.create(Session(history=_items(5)))
        store.fork_session(Session(id="child", parent_id=parent.id), 3)
        store.commit("child", 1, append=_items(2, "c"))
        store.load(parent.id)  # warm: the script is loaded
        for window, contents in [
            ({}, ["m0", "m1", "m2", "c0", "c1"]),
            ({"last": 4}, ["m1", "m2", "c0", "c1"]),
            ({"last": 40}, ["m0", "m1", "m2", "c0", "c1"]),
        ]:
            WIRE.reset()
            loaded = store.load("child", **window)
            assert WIRE.one_round_trip() == SCRIPT, window
            assert [item["content"] for item in loaded.history] == contents


TRANSACTION = ["MULTI", "FCALL", "LRANGE", "EXEC"]


def test_long_histories_load_in_a_transaction_short_ones_by_the_script(
    redis_url: str, namespace: str
) -> None:
    """The items of a long history skip Lua (the script sends the header, an LRANGE in the same
    MULTI the items); a short one is the script alone. Both one round trip, both exact."""
    long_items = _items(_codec.TRANSACTION_MIN_ITEMS + 6)
    with RedisStore.from_url(with_options(redis_url, namespace=namespace)) as writer:
        long = writer.create(Session(history=long_items))
        short = writer.create(Session(history=_items(3)))
    with counting_store(redis_url, namespace) as store:  # knows neither: a transaction
        store.exists(long.id)  # warm: the pool is open
        for session_id, first, then in [
            (long.id, TRANSACTION, TRANSACTION),
            (short.id, TRANSACTION, SCRIPT),  # it learnt the length from the first read
        ]:
            for expected in (first, then):
                WIRE.reset()
                loaded = store.load(session_id)
                assert WIRE.one_round_trip() == expected, session_id
        assert [i["content"] for i in store.load(long.id).history] == [
            i["content"] for i in long_items
        ]
        assert [i["seq"] for i in store.load(long.id, last=64).history] == list(range(7, 71))
        assert loaded.history_len == 3
        WIRE.reset()
        assert [i["seq"] for i in store.load(long.id, last=5).history] == [66, 67, 68, 69, 70]
        assert WIRE.one_round_trip() == SCRIPT


def test_a_long_fork_loads_through_its_share_in_the_transaction(
    redis_url: str, namespace: str
) -> None:
    """A fork's own list lacks its parent's items: the script sees the share and sends them."""
    n = _codec.TRANSACTION_MIN_ITEMS + 10
    with RedisStore.from_url(with_options(redis_url, namespace=namespace)) as writer:
        parent = writer.create(Session(history=_items(n)))
        writer.fork_session(Session(id="long-child", parent_id=parent.id), n - 2)
        writer.commit("long-child", 1, append=_items(3, "c"))
    with counting_store(redis_url, namespace) as store:
        store.exists(parent.id)
        WIRE.reset()
        loaded = store.load("long-child")
        assert WIRE.one_round_trip() == TRANSACTION
        contents = [item["content"] for item in loaded.history]
        assert contents == [f"m{i}" for i in range(n - 2)] + ["c0", "c1", "c2"]
        assert [item["seq"] for item in loaded.history] == list(range(1, n + 2))
        tail = store.load("long-child", last=66).history
        assert [item["content"] for item in tail] == contents[-66:]


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_a_load_transaction_reloads_a_script_the_server_lost(
    throwaway: ThrowawayRedis, functions: bool
) -> None:
    with RedisStore.from_url(with_options(throwaway.url, namespace="noscript")) as store:
        created = store.create(Session(history=_items(_codec.TRANSACTION_MIN_ITEMS)))
        other = RedisStore.from_url(with_options(throwaway.url, namespace="noscript"))
        other.use_functions = functions
        assert len(other.load(created.id).history) == _codec.TRANSACTION_MIN_ITEMS
        server = redis.Redis(port=throwaway.port)
        server.script_flush()
        server.function_flush()
        WIRE.reset()
        assert len(other.load(created.id).history) == _codec.TRANSACTION_MIN_ITEMS
        assert _libraries(server) == ([lua.library().name] if functions else [])
        server.close()
        other.close()


def _libraries(server: redis.Redis) -> list[str]:
    """The function libraries a server holds, by name (FUNCTION LIST's RESP2 reply)."""
    return [entry[1].decode() for entry in server.function_list()]


def test_the_scripts_run_as_a_function_library_loaded_once(throwaway: ThrowawayRedis) -> None:
    """FCALL after one FUNCTION LOAD; a lost library (restart, FUNCTION FLUSH) is loaded
    again by the next call; a library another process loaded first is used as it is."""
    server = redis.Redis(port=throwaway.port)
    with counting_store(throwaway.url, "fn") as store:
        WIRE.reset()
        created = store.create(Session(history=_items(2)))
        assert WIRE.commands[-3:] == ["FCALL", "FUNCTION", "FCALL"]
        assert _libraries(server) == [lua.library().name]
        WIRE.reset()
        store.commit(created.id, 1, append=_items(1))
        assert WIRE.one_round_trip() == ["FCALL"]
        server.function_flush()
        assert len(store.load(created.id).history) == 3
        assert _libraries(server) == [lua.library().name]
    with counting_store(throwaway.url, "fn") as other:  # the library is there: used at once
        WIRE.reset()
        assert other.exists(created.id)
        assert WIRE.commands[-1:] == ["FCALL"]
        assert "FUNCTION" not in WIRE.commands
    # two stores loading it at once: the second finds it "already exists", and uses it
    server.function_flush()
    first, second = RedisStore.from_url(throwaway.url), RedisStore.from_url(throwaway.url)
    assert first._load_library()
    assert second._load_library()
    assert second.exists(created.id) is False  # another namespace: only that it ran
    first.close()
    second.close()
    server.close()


@pytest.mark.parametrize(
    "refused", [["-fcall", "-function"], ["-function"]], ids=["no-fcall", "no-function-load"]
)
def test_a_user_without_functions_runs_the_scripts_with_evalsha(
    throwaway: ThrowawayRedis, refused: list[str]
) -> None:
    """What a Redis 6.2 server or an ACL without FCALL or FUNCTION gets (FCALL refused, or the
    library missing and FUNCTION LOAD refused): EVALSHA, decided at the first call, with the
    whole store working."""
    admin = redis.Redis(port=throwaway.port)
    admin.acl_setuser(
        "nofn", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", *refused]
    )
    url = f"redis://nofn:pw@127.0.0.1:{throwaway.port}/0"
    with RedisStore.from_url(with_options(url, namespace="nofn")) as store:
        created = store.create(Session(owner="o", history=_items(3)))
        assert store._functions is False
        store.commit(created.id, 1, append=_items(2))
        assert len(store.load(created.id).history) == 5
        assert [h.id for h in store.list(owner="o").sessions] == [created.id]
    assert _libraries(admin) == []
    admin.close()


def test_the_function_library_is_named_by_its_text() -> None:
    # a tether whose scripts differ loads a library of its own beside an older one
    library = lua.library()
    assert library.source.startswith(f"#!lua name={library.name}\n")
    other = lua.Library(lua.SCRIPTS[:-1])
    assert other.name != library.name
    assert other.name.startswith("tether_")
    assert library.function("commit") == f"{library.name}_commit"
    assert library.source.count("redis.register_function(") == len(lua.SCRIPTS)


def test_an_injected_clock_decides_expiry_in_whole_loads(redis_url: str, namespace: str) -> None:
    clock = FakeClock()
    with counting_store(redis_url, namespace, clock=clock) as store:
        created = store.create(Session(expires_at=clock() + timedelta(seconds=5)))
        WIRE.reset()
        assert store.load(created.id) == created
        assert WIRE.one_round_trip() == SCRIPT
        clock.advance(6)
        with pytest.raises(SessionNotFound):
            store.load(created.id)


def test_server_counts_one_script_call_per_commit(throwaway: ThrowawayRedis) -> None:
    """The server's own count, on a server nobody else uses: one EVALSHA per commit, and the
    commands inside it only append (no read-modify-write of the history from the client)."""
    with RedisStore.from_url(with_options(throwaway.url, namespace="rt")) as store:
        created = store.create(Session(history=_items(50)))
        store.commit(created.id, 1, append=_items(1))
        client = redis.Redis(port=throwaway.port)
        client.config_resetstat()
        for version in range(2, 12):
            store.commit(created.id, version, append=_items(2))
        stats = {
            k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()
        }
        client.close()
    assert stats.pop("fcall") == 10
    assert stats.pop("config|resetstat") == 1
    assert stats.pop("rpush") == 10  # one append per commit ...
    assert not {"lrange", "lset", "ltrim", "del", "multi", "exec", "watch", "eval"} & set(stats)


def test_a_load_asks_redis_for_the_time_only_for_a_session_that_expires(
    throwaway: ThrowawayRedis,
) -> None:
    """Without an injected clock the scripts take Redis's TIME: a write always (it stamps
    updated_at), a load only when the session has an expiry to compare with."""
    with RedisStore.from_url(with_options(throwaway.url, namespace="tm")) as store:
        lasting = store.create(Session(history=_items(3)))
        expiring = store.create(
            Session(history=_items(3), expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
        )
        client = redis.Redis(port=throwaway.port)

        def time_calls() -> int:
            stats = client.info("commandstats")
            return int(stats.get("cmdstat_time", {"calls": 0})["calls"])

        client.config_resetstat()
        for _ in range(3):
            assert len(store.load(lasting.id, after=1).items) == 2
        assert store.exists(lasting.id)
        assert time_calls() == 0
        assert len(store.load(expiring.id).items) == 3
        assert time_calls() == 1
        store.commit(lasting.id, 1, append=_items(1))
        assert time_calls() == 2
        client.close()


# --- TTL and expiry ----------------------------------------------------------------------------


def _pttls(raw: redis.Redis, keys: list[str]) -> list[int]:
    return [int(raw.pttl(key)) for key in keys]


def test_store_ttl_is_set_and_refreshed_on_every_write(
    redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    with RedisStore.from_url(with_options(redis_url, namespace=namespace, ttl="60")) as store:
        created = store.create(Session(metadata={"k": 1}, history=_items(2)))
        keys = store.keys.session(created.id)
        assert all(55_000 < ttl <= 60_000 for ttl in _pttls(raw, keys))
        for key in keys:
            raw.pexpire(key, 5_000)
        store.commit(created.id, 1, append=_items(1))
        assert all(55_000 < ttl <= 60_000 for ttl in _pttls(raw, keys)), "commit refreshes"
        for key in keys:
            raw.pexpire(key, 5_000)
        lease = store.claim(created.id, "w", 30)
        assert all(55_000 < ttl <= 60_000 for ttl in _pttls(raw, keys)), "claims refresh too"
        store.release(lease)
        # the index keys are the namespace's, shared by every session: they never expire
        assert [raw.pttl(key) for key in (store.keys.index[0], store.keys.index[4])] == [-1, -1]


def test_expires_at_sets_native_expiry(
    redis_url: str, namespace: str, store: RedisStore, raw: redis.Redis
) -> None:
    expires = datetime.now(timezone.utc) + timedelta(seconds=100)
    created = store.create(Session(expires_at=expires, metadata={"k": 1}, history=_items(1)))
    keys = store.keys.session(created.id)
    expected_ms = -(-to_micros(expires) // 1000)  # ceil: Redis never drops it early
    assert [raw.pexpiretime(key) for key in keys] == [expected_ms] * 3
    store.commit(created.id, 1, changes={"expires_at": None})
    assert _pttls(raw, keys) == [-1, -1, -1]
    # with a store ttl as well, whichever comes first wins
    with RedisStore.from_url(with_options(redis_url, namespace=namespace, ttl="30")) as short:
        short.commit(created.id, 2, changes={"expires_at": expires})
        assert all(25_000 < ttl <= 30_000 for ttl in _pttls(raw, keys))
    # expiring by commit removes the session and its index entries at once
    store.commit(created.id, 3, changes={"expires_at": datetime.now(timezone.utc)})
    assert raw.exists(*keys) == 0
    assert _index_mentions(raw, store.keys, created.id) == []


def test_index_entries_of_natively_expired_sessions_are_cleaned_lazily(
    redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    with counting_store(redis_url, namespace) as store:
        soon = datetime.now(timezone.utc) + timedelta(milliseconds=300)
        gone = store.create(Session(owner="o", agent="a", expires_at=soon, history=_items(1)))
        kept = store.create(Session(owner="o", agent="a"))
        time.sleep(0.4)
        assert raw.exists(*store.keys.session(gone.id)) == 0, "Redis expired the keys itself"
        # left behind: its entries in the four sorted sets and its ix:who field
        assert len(_index_mentions(raw, store.keys, gone.id)) == 5
        WIRE.reset()
        assert [h.id for h in store.list(agent="a").sessions] == [kept.id]
        assert WIRE.commands == SCRIPT, "one script call, no SCAN"
        assert _index_mentions(raw, store.keys, gone.id) == [], "all four indexes cleaned"
        assert len(_index_mentions(raw, store.keys, kept.id)) == 5
    for script in lua.SCRIPTS:
        assert "'SCAN'" not in script.source.upper()
        assert "'KEYS'" not in script.source.upper()


def test_creates_sweep_stale_entries_that_nobody_lists(
    redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    with RedisStore.from_url(with_options(redis_url, namespace=namespace)) as store:
        soon = datetime.now(timezone.utc) + timedelta(milliseconds=200)
        stale = [store.create(Session(owner="o", expires_at=soon)).id for _ in range(3)]
        time.sleep(0.3)
        for _ in range(3):  # each create re-checks lua.SWEEP entries, round robin
            store.create(Session(owner="o"))
        for session_id in stale:
            assert _index_mentions(raw, store.keys, session_id) == []
        assert raw.zcard(store.keys.index[0]) == 3


def test_purge_expired_walks_the_index(redis_url: str, namespace: str, raw: redis.Redis) -> None:
    clock = FakeClock()
    with RedisStore.from_url(with_options(redis_url, namespace=namespace), clock=clock) as store:
        store.list_budget = 2  # several script calls
        ids = [
            store.create(Session(expires_at=clock() + timedelta(seconds=10))).id for _ in range(3)
        ]
        kept = store.create(Session()).id
        clock.advance(11)  # expired by the store's clock; Redis's clock says not yet
        assert raw.exists(*store.keys.session(ids[0])) == 1
        assert store.purge_expired() == 3
        assert all(raw.exists(*store.keys.session(i)) == 0 for i in ids)
        assert all(_index_mentions(raw, store.keys, i) == [] for i in ids)
        assert store.purge_expired() == 0
        assert store.exists(kept)


# --- listing -----------------------------------------------------------------------------------


def test_ties_are_broken_by_id_and_cursors_are_keysets(redis_url: str, namespace: str) -> None:
    frozen = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    with RedisStore.from_url(
        with_options(redis_url, namespace=namespace), clock=lambda: frozen
    ) as store:
        ids = ["a", "a:1", "a:10", "a:2", "b", "b-", "z"]
        for session_id in ids:
            store.create(Session(id=session_id, owner="tie"))
        seen, cursor, cursors = [], None, []
        while True:
            page = store.list(owner="tie", limit=2, cursor=cursor)
            seen += [h.id for h in page.sessions]
            if page.next_cursor is None:
                break
            cursors.append(page.next_cursor)
            # the cursor is the core's opaque (updated_at, id) of the page's last session
            assert _core.decode_cursor(page.next_cursor) == (to_micros(frozen), seen[-1])
            cursor = page.next_cursor
        assert seen == sorted(ids, reverse=True)
        # a cursor stays valid when its session is gone: it is a position, not a pointer
        store.delete("a:2")
        assert [h.id for h in store.list(owner="tie", cursor=cursors[1]).sessions] == [
            "a:10",
            "a:1",
            "a",
        ]
        with pytest.raises(InvalidRequest):
            store.list(cursor=cursors[0][:-3] + "!!!")


def test_selective_listing_resumes_past_the_budget(redis_url: str, namespace: str) -> None:
    with counting_store(redis_url, namespace) as store:
        store.list_budget = 3
        oldest = store.create(Session(owner="o", metadata={"rare": True})).id
        for _ in range(10):
            store.create(Session(owner="o", metadata={"rare": False}))
        WIRE.reset()
        page = store.list(owner="o", metadata={"rare": True})
        assert [h.id for h in page.sessions] == [oldest]
        assert page.next_cursor is None
        assert WIRE.commands == SCRIPT * 4, "11 entries, 3 per script call"
        store.list_budget = _options.LIST_BUDGET
        WIRE.reset()
        assert [h.id for h in store.list(metadata={"rare": True}).sessions] == [oldest]
        assert WIRE.commands == SCRIPT


def test_list_time_bounds_at_the_edges(store: RedisStore) -> None:
    created = store.create(Session(owner="o"))
    assert created.updated_at is not None
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    far = datetime(9999, 1, 1, tzinfo=timezone.utc)

    def ids(**filters: Any) -> list[str]:
        return [h.id for h in store.list(**filters).sessions]

    assert ids(updated_before=epoch) == []
    assert ids(updated_after=far) == []
    assert ids(updated_after=datetime(1900, 1, 1, tzinfo=timezone.utc)) == [created.id]
    assert ids(updated_before=far) == [created.id]
    assert ids(updated_after=created.updated_at) == []
    assert ids(updated_before=created.updated_at + timedelta(microseconds=1)) == [created.id]


# --- time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=timezone.utc),
        datetime(2000, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(2024, 12, 31, 12, 0, 0, 5, tzinfo=timezone.utc),
        datetime(2100, 3, 1, 0, 0, 1, 100000, tzinfo=timezone.utc),
        datetime(2255, 6, 5, 23, 47, 34, 740991, tzinfo=timezone.utc),
    ],
)
def test_item_timestamps_stamped_by_the_script_match_python(
    redis_url: str, namespace: str, moment: datetime
) -> None:
    with RedisStore.from_url(
        with_options(redis_url, namespace=namespace), clock=lambda: moment
    ) as store:
        created = store.create(Session(history=_items(1)))
        stamp = moment.isoformat(timespec="microseconds")
        assert created.history[0]["timestamp"] == stamp
        assert store.load(created.id).history[0]["timestamp"] == stamp
        assert created.created_at == moment


def test_without_a_clock_redis_time_is_used(store: RedisStore, raw: redis.Redis) -> None:
    seconds, micros = raw.time()
    server_now = datetime.fromtimestamp(seconds, timezone.utc) + timedelta(microseconds=micros)
    created = store.create(Session(history=_items(1)))
    assert created.created_at is not None
    assert abs(created.created_at - server_now) < timedelta(seconds=2)
    lease = store.claim(created.id, "w", 30)
    assert abs(lease.expires_at - (server_now + timedelta(seconds=30))) < timedelta(seconds=2)


# --- faults ------------------------------------------------------------------------------------


def test_other_redis_errors_are_store_errors(store: RedisStore, raw: redis.Redis) -> None:
    header = store.keys.session("squatted")[0]
    raw.set(header, "not a hash")
    with pytest.raises(StoreError) as info:
        store.load("squatted")
    assert not isinstance(info.value, StoreUnavailable)
    assert isinstance(info.value.__cause__, redis.ResponseError)
    assert "WRONGTYPE" in str(info.value)


def test_a_corrupt_header_is_that_session_alone(store: RedisStore, raw: redis.Redis) -> None:
    bad = store.create(Session(owner="o"))
    good = store.create(Session(owner="o"))
    raw.hset(store.keys.session(bad.id)[0], "state", "{not json")
    with pytest.raises(CorruptSession):
        store.load(bad.id)
    assert [h.id for h in store.list(owner="o").sessions] == [good.id]


def test_a_retried_write_whose_reply_was_lost_applies_once(redis_url: str, namespace: str) -> None:
    """The client's one retry on a connection error re-sends the script; the nonce (or the
    new lease token) lets the script see it already ran, so nothing is applied twice."""
    with counting_store(redis_url, namespace) as store:
        created = store.create(Session())
        store.load(created.id)
        WIRE.lose_next_reply = True
        assert store.commit(created.id, 1, append=_items(1)) == 2
        assert not WIRE.lose_next_reply, "the reply was lost and the call retried"
        assert store.load(created.id).history_len == 1
        WIRE.lose_next_reply = True
        again = store.create(Session(id="retried", history=_items(2)))
        assert not WIRE.lose_next_reply
        assert store.load("retried") == again
        WIRE.lose_next_reply = True
        lease = store.claim(created.id, "w", 60)
        assert not WIRE.lose_next_reply
        assert lease.fence == 1
        WIRE.lose_next_reply = True
        store.release(lease)
        assert not WIRE.lose_next_reply
        assert store.load(created.id, last=0).lease_expires_at is None


def test_down_server_fails_fast_and_the_next_call_after_restart_works(
    throwaway: ThrowawayRedis,
) -> None:
    url = with_options(
        throwaway.url, namespace="faults", socket_timeout="2", socket_connect_timeout="1"
    )
    with RedisStore.from_url(url) as store:
        store.create(Session(id="before"))
        throwaway.kill()
        calls: list[Callable[[], Any]] = [
            lambda: store.load("before"),
            lambda: store.commit("before", 1, append=_items(1)),
            lambda: store.create(Session()),
            store.list,
            lambda: store.exists("before"),
            lambda: store.claim("before", "w", 10),
            lambda: store.delete("before"),
        ]
        for call in calls:
            start = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                call()
            assert time.monotonic() - start < 10, "a hang guard, not a speed test"
            assert isinstance(info.value.__cause__, redis.ConnectionError)
            assert f"127.0.0.1:{throwaway.port}" in str(info.value)
        throwaway.start()  # same port, empty: this server keeps nothing
        assert not store.exists("before")
        store.create(Session(id="before", history=_items(1)))
        assert store.load("before").history_len == 1


def test_stalled_server_times_out_instead_of_hanging(throwaway: ThrowawayRedis) -> None:
    url = with_options(throwaway.url, namespace="stall", socket_timeout="0.5")
    with RedisStore.from_url(url) as store:
        created = store.create(Session())
        throwaway.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                store.load(created.id)
            assert time.monotonic() - start < 10
            assert isinstance(info.value.__cause__, redis.TimeoutError)
        finally:
            throwaway.signal(signal.SIGCONT)
        assert store.load(created.id).version == 1


async def test_async_down_server_fails_fast_and_recovers(throwaway: ThrowawayRedis) -> None:
    url = with_options(
        throwaway.url, namespace="faults", socket_timeout="2", socket_connect_timeout="1"
    )
    async with AsyncRedisStore.from_url(url) as store:
        await store.create(Session(id="before"))
        throwaway.kill()
        for call in (lambda: store.load("before"), store.list):
            start = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call()
            assert time.monotonic() - start < 10
        throwaway.start()
        with pytest.raises(SessionNotFound):
            await store.load("before")
        await store.create(Session(id="before"))
        assert await store.exists("before")


# --- the framework contract: keyed rows in a hash, tails trimmed in place ----------------------


def test_keyed_reads_touch_no_list_element_and_tails_trim_in_place(
    redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    with RedisStore.from_url(with_options(redis_url, namespace=namespace)) as store:
        created = store.create(Session(history=_items(200)))
        store.commit(created.id, 1, append=[tether.KeyedItem("ck", {"type": "checkpoint"})])
        items = store.keys.session(created.id)[1]
        hash_key, seqs_key = store.keys.item_keys(created.id)
        assert (raw.type(hash_key), raw.type(seqs_key)) == (b"hash", b"zset")
        raw.rename(items, items + ":moved")  # no list at all: a read by key must not need it
        try:
            found = store.items_by_key(created.id, ["ck", "other"])
        finally:
            raw.rename(items + ":moved", items)
        assert {k: (v.seq, v.item) for k, v in found.items()} == {
            "ck": (201, {"type": "checkpoint"})
        }
        # the tail: the list is trimmed, the key of a removed item dropped from both keys
        assert store.replace_tail(created.id, 2, 199, [{"n": 1}]) == 3
        assert raw.llen(items) == 200
        assert (raw.hlen(hash_key), raw.zcard(seqs_key)) == (0, 0)
        assert [e.seq for e in store.load(created.id, last=2).items] == [199, 200]
        # a blind append is one script call, refused under another runner's lease
        lease = store.claim(created.id, "runner", 60)
        with pytest.raises(tether.AlreadyClaimed):
            store.append(created.id, [{"n": 2}])
        assert store.append(created.id, [tether.KeyedItem("ck", {"n": 2})], lease=lease) == 4
        assert raw.zscore(seqs_key, "ck") == 201


# --- the scripts' descriptions (no server) ------------------------------------------------------


def test_every_lua_file_is_a_script_or_a_prelude_in_use() -> None:
    folder = resources.files("tether.stores.redis").joinpath("lua")
    files = {entry.name for entry in folder.iterdir() if entry.name.endswith(".lua")}
    used = {f"{script.name}.lua" for script in lua.SCRIPTS}
    used |= {f"{prelude}.lua" for script in lua.SCRIPTS for prelude in script.preludes}
    assert files == used


def test_a_script_binds_its_keys_and_named_arguments_in_order() -> None:
    source = lua.LOAD.source
    assert "local H, ITEMS\nH, ITEMS = KEYS[1], KEYS[2]\n" in source
    fields = "([^%z]*)%z" * 6 + "([^%z]*)"
    assert (
        f"local A1, A2, A3, A4, A5, A6, A7 = string.match(ARGV[1] or '', '^{fields}$')\n" in source
    )
    assert (
        "ARG = {now = A1, base = A2, session_id = A3, last = A4, after = A5, limit = A6, "
        "listed = A7}\n" in source
    )
    assert "local ARG_TAIL = 2  -- " in source
    load = lua.LoadArgs(now="", base="b:", session_id="s", last=5, after=None, limit=None)
    assert load.argv() == ["\0b:\0s\x005\0\0\x000"]
    args = lua.DeleteArgs(
        now="1",
        base="b:",
        session_id="s",
        schema_version=3,
        expected_version=None,
        lease_token=None,
        force=True,
    )
    assert args.argv() == ["1\0b:\0s\x003\0\0\x001"]
    tail = lua.ItemsByKeyArgs(now="", schema_version=3, tail=["k1", "k2"])
    assert tail.argv() == ["\x003", "k1", "k2"]
    lease = lua.LeaseArgs(
        now="", base="b:", session_id="s", token=b'"t"', lease_ttl_us=None, store_ttl_ms=0,
        nonce="n",
    )  # fmt: skip
    assert lease.argv() == ['\0b:\0s\0"t"\0\x000\0n']


def test_a_named_argument_holding_the_separator_is_refused() -> None:
    # a NUL would shift every later field in the script's split: refuse it, naming the field
    args = lua.LoadArgs(now="", base="b:", session_id="s\0x", last=None, after=None, limit=None)
    with pytest.raises(ValueError, match=r"\['session_id'\] hold a NUL"):
        args.argv()


def test_packed_arguments_reach_the_script_field_by_field(raw: redis.Redis) -> None:
    # every field lands in its own ARG name on a real server, the empty ones included, and
    # a text that does not split into the described fields is an error, not shifted fields
    delete = lua.DeleteArgs(
        now="", base="b:", session_id="s", schema_version=3, expected_version=None,
        lease_token=b'"tok"', force=False,
    )  # fmt: skip
    echo = delete_echo_source()
    fields = raw.evalsha(raw.script_load(echo), 0, *delete.argv())
    assert fields == [b"", b"b:", b"s", b"3", b"", b'"tok"', b"0"]
    with pytest.raises(redis.ResponseError, match="cannot split"):
        raw.evalsha(raw.script_load(echo), 0, "only\0three\0fields")


def delete_echo_source() -> str:
    """The delete script's generated header, then a body that returns its named fields."""
    split = "got arguments it cannot split') end\n"
    header = lua.DELETE.source.split(split)[0] + split
    names = ", ".join(f"ARG.{name}" for name in lua.DeleteArgs.names())
    return header + f"return {{{names}}}\n"


def test_a_description_that_disagrees_with_its_script_is_refused() -> None:
    # exists.lua reads no argument but now: a description with one more is stale
    stale = lua.LuaScript("exists", lua.LoadArgs, ("H",))
    stale_names = r"\['after', 'base', 'last', 'limit', 'listed', 'session_id'\]"
    with pytest.raises(RuntimeError, match=r"described but not read " + stale_names):
        _ = stale.source
    # load.lua reads ARG.last / after / limit: a description without them would give Lua nil
    missing = lua.LuaScript("load", lua.ExistsArgs, ("H", "ITEMS"))
    unread = r"\['after', 'last', 'limit', 'listed', 'session_id'\]"  # ARG.base: _shares.lua
    with pytest.raises(RuntimeError, match=r"read but not described " + unread):
        _ = missing.source


def test_keys_for_a_script_follow_its_names() -> None:
    keys = _keys.Keys.for_namespace("ns")
    assert keys.for_script(lua.CREATE.keys, "s1") == keys.write_keys("s1")
    sweep = "tether:{ns}:ix:sweep"
    assert keys.for_script(lua.COMMIT.keys, "s1") == [
        key for key in keys.write_keys("s1") if key != sweep
    ]
    assert keys.for_script(lua.COMMIT.keys, "s2")[-1] == "tether:{ns}:ks:s2"  # not s1's again
    assert keys.for_script(lua.LIST.keys) == list(keys.index)
    assert keys.for_script(lua.ITEMS_BY_KEY.keys, "s1") == [
        "tether:{ns}:s:s1",
        "tether:{ns}:k:s1",
    ]
    with pytest.raises(KeyError, match="need a session id"):
        keys.for_script(lua.LOAD.keys)
    with pytest.raises(ValueError, match="before the index's"):
        keys.for_script(("H", "IX_WHO"), "s1")


def test_only_the_scripts_that_declare_the_sweep_key_reach_the_sweep() -> None:
    # Every key a script touches is declared: IX_SWEEP is touched by sweep() alone, which
    # placed() alone calls; a script without IX_SWEEP among its keys calls neither.
    preludes = {name: lua._read(f"{name}.lua") for name in lua.PRELUDES}
    users = [name for name, text in preludes.items() if "IX_SWEEP" in text]
    assert users == ["_index"]
    assert re.findall(r"\bsweep\(", preludes["_session"]) == ["sweep("]
    assert not re.search(r"\bsweep\(", preludes["_index"].split("local function sweep(")[0])
    for script in lua.SCRIPTS:
        body = script.body
        assert "IX_SWEEP" not in body
        if "IX_SWEEP" not in script.keys:
            assert not re.search(r"\b(placed|sweep)\(", body), script.name
    declared = {script.name for script in lua.SCRIPTS if "IX_SWEEP" in script.keys}
    assert {"create", "fork", "restore"} <= declared
    assert "commit" not in declared


@pytest.mark.parametrize(
    ("reply", "missing", "unsupported", "loaded"),
    [
        ("Function not found", True, False, False),
        (
            "unknown command 'FCALL', with args beginning with: 'tether_x_load' '2' ",
            False,
            True,
            False,
        ),
        ("unknown command 'FUNCTION', with args beginning with: 'LOAD' ", False, True, False),
        ("this user has no permissions to run the 'fcall' command", False, True, False),
        ("Library 'tether_x' already exists", False, False, True),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False, False, False),
    ],
)
def test_what_a_reply_says_about_the_function_library(
    reply: str, missing: bool, unsupported: bool, loaded: bool
) -> None:
    # Redis 6.2 answers FCALL and FUNCTION with "unknown command", an ACL without them with
    # NOPERM: EVALSHA then; a script's own error is none of these and is raised as it is
    exc = redis.ResponseError(reply)
    assert _functions.missing(exc) is missing
    assert _functions.unsupported(exc) is unsupported
    assert _functions.already_loaded(exc) is loaded


def test_item_timestamps_follow_the_clock_across_days(redis_url: str, namespace: str) -> None:
    # the scripts keep the date of the last day they formatted (the function library lasts
    # between calls): each commit on a new day, a new year or a leap day gets its own date,
    # and each row is closed after its seq and timestamp (the client sends it without "}")
    times = [
        datetime(2024, 2, 28, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(2024, 2, 29, 0, 0, 0, 1, tzinfo=timezone.utc),
        datetime(2024, 12, 31, 23, 0, 0, tzinfo=timezone.utc),
        datetime(2025, 1, 1, 1, 2, 3, 40, tzinfo=timezone.utc),
        datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc),
    ]
    now = [times[0]]
    with RedisStore.from_url(
        with_options(redis_url, namespace=namespace), clock=lambda: now[0]
    ) as store:
        created = store.create(Session(history=[{"n": 0}, {}]))
        for version, at in enumerate(times[1:], start=1):
            now[0] = at
            store.commit(created.id, version, append=[{"n": version}, {}])
        entries = store.load(created.id).items
    stamps = [entry.timestamp for entry in entries]
    assert stamps == [at.isoformat(timespec="microseconds") for at in times for _ in range(2)]
    assert [entry.seq for entry in entries] == list(range(1, 11))
    assert [entry.item for entry in entries][:4] == [{"n": 0}, {}, {"n": 1}, {}]
