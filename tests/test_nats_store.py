"""The NATS JetStream store (the key-value kit over a KV bucket): the whole conformance suite,
multi-process clauses included, on the local server. Each test gets its own bucket, deleted
afterwards; the server is never wiped."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import tether
from tether.errors import ConfigurationError, StoreError, StoreUnavailable
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance

from .conftest import require_module

require_module("nats", "nats")

from tether.stores.nats_async import AsyncNatsStore  # noqa: E402 - after the check above
from tether.stores.nats_sync import NatsStore  # noqa: E402


@pytest.fixture
def bucket(nats_bucket: str) -> str:
    """conftest's bucket of the test's own, by the name this module's tests use."""
    return nats_bucket


def _url(server: str, bucket: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{server}/{bucket}" + (f"?{query}" if query else "")


class TestNatsStore(StoreConformance):
    @pytest.fixture
    def store(self, nats_server: str, bucket: str, clock: FakeClock) -> Iterator[NatsStore]:
        with NatsStore(nats_server, bucket, clock=clock, chunk_items=8) as store:
            yield store

    @pytest.fixture
    def store_opener(self, nats_server: str, bucket: str) -> Callable[[], Any]:
        return functools.partial(tether.open_store, _url(nats_server, bucket, chunk_items="8"))


class TestAsyncNatsStore(AsyncStoreConformance):
    # The sync class above races at full size across OS processes, on the same kit and
    # bucket layout; this one proves the async path does across processes too, in a quarter
    # of the time (about 10 s less in CI).
    claim_rounds = 50
    appends_per_writer = 50

    @pytest.fixture
    async def store(
        self, nats_server: str, bucket: str, clock: FakeClock
    ) -> AsyncIterator[AsyncNatsStore]:
        async with AsyncNatsStore(nats_server, bucket, clock=clock, chunk_items=8) as store:
            yield store

    @pytest.fixture
    def store_opener(self, nats_server: str, bucket: str) -> Callable[[], Any]:
        return functools.partial(
            tether.open_async_store, _url(nats_server, bucket, chunk_items="8")
        )


def test_opens_by_url_and_splits_values_over_the_payload_limit(
    nats_server: str, bucket: str
) -> None:
    with tether.open_store(_url(nats_server, bucket)) as store:
        assert isinstance(store, NatsStore)
        limit = store.backend.max_value_size
        big = "x" * (2 * limit + 10)  # three parts
        created = store.create(tether.Session(history=[{"role": "tool", "content": big}]))
        store.commit(created.id, 1, append=[{"role": "user", "content": big}])
        assert [i["content"] for i in store.load(created.id).history] == [big, big]


def test_a_bucket_whose_storage_the_server_failed_to_make_is_asked_for_again() -> None:
    """nats-server answers err_code 10049 to a stream created while it removes the account's
    stream directory (its last stream was just deleted): the creation is asked for again, a
    bounded number of times; any other server error is reported at once."""
    import nats.js.errors

    failed = nats.js.errors.ServerError(
        code=500, err_code=10049, description="error creating store for stream"
    )

    class Stream:
        def __init__(self, failures: int, error: Exception = failed) -> None:
            self.failures, self.error, self.creates = failures, error, 0

        async def key_value(self, bucket: str) -> Any:
            raise nats.js.errors.BucketNotFoundError()

        async def create_key_value(self, **config: Any) -> Any:
            self.creates += 1
            if self.creates <= self.failures:
                raise self.error
            return ("bucket", config["bucket"])

    backend = AsyncNatsStore("nats://127.0.0.1:4222", "tether_tretry").backend
    twice = Stream(failures=2)
    opened: Any = asyncio.run(backend._open_bucket(twice))
    assert opened == ("bucket", "tether_tretry")
    assert twice.creates == 3
    always = Stream(failures=100)
    with pytest.raises(StoreError, match="error creating store for stream"):
        asyncio.run(backend._open_bucket(always))
    assert always.creates == 5
    other = nats.js.errors.ServerError(code=500, err_code=10001, description="something else")
    once = Stream(failures=100, error=other)
    with pytest.raises(StoreError, match="something else"):
        asyncio.run(backend._open_bucket(once))
    assert once.creates == 1


def test_bad_urls_and_an_absent_server_say_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="bucket"):
        tether.open_store("nats://127.0.0.1:4222/bad.bucket")
    with pytest.raises(ConfigurationError, match="unknown option"):
        tether.open_store("nats://127.0.0.1:4222/b?colour=red")
    store = tether.open_store("nats://127.0.0.1:1/b?connect_timeout=0.2")
    with store, pytest.raises(StoreUnavailable, match="cannot reach the NATS server"):
        store.exists("anything")


# --- a server that goes away: StoreUnavailable, never a hang ------------------------------------


class _Proxy:
    """A TCP relay in front of the NATS server that a test can cut (the server is gone, nothing
    listens), freeze (connections stay open, nothing answers) and bring back."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 4222)
        self.frozen = threading.Event()
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listen()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def listen(self) -> None:
        self.frozen.clear()
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._track(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(self.upstream)
            self._track(client)
            self._track(server)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def freeze(self) -> None:
        """From now on bytes vanish; the connections stay up."""
        self.frozen.set()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.frozen.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close every connection and stop listening: the server is gone."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxy(nats_server: str) -> Iterator[_Proxy]:
    relay = _Proxy(nats_server)
    yield relay
    relay.cut()


def _within(seconds: float, call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread: what it raised (None if nothing); fails if it is still
    running after ``seconds`` (a hang)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still waiting after {seconds} s: a vanished server must not hang a call"
    return outcome[0]


def test_a_server_that_goes_away_mid_run_gives_store_unavailable_then_works_again(
    proxy: _Proxy, bucket: str
) -> None:
    store = NatsStore(proxy.url, bucket, connect_timeout=0.5, timeout=1.0)
    with store:
        created = store.create(tether.Session(history=[{"role": "user", "content": "hi"}] * 3))
        assert len(store.list().sessions) == 1
        proxy.cut()
        calls: list[Callable[[], Any]] = [
            lambda: store.load(created.id),
            lambda: store.commit(created.id, 1, append=[{"role": "user"}]),
            store.list,
            lambda: store.exists(created.id),
        ]
        for call in calls:
            started = time.monotonic()
            error = _within(15, call)
            assert isinstance(error, StoreUnavailable), repr(error)
            assert "NATS" in str(error)
            assert time.monotonic() - started < 5
        proxy.listen()  # the server is back: the same store object works again
        store.commit(created.id, 1, append=[{"role": "user", "content": "back"}])
        assert store.load(created.id).history[-1]["content"] == "back"


@pytest.mark.parametrize("op", ["load", "commit", "list"])
def test_a_server_that_stops_answering_gives_store_unavailable_not_a_hang(
    proxy: _Proxy, bucket: str, op: str
) -> None:
    with NatsStore(proxy.url, bucket, connect_timeout=0.5, timeout=1.0) as store:
        created = store.create(tether.Session(history=[{"role": "user"}] * 3))
        proxy.freeze()
        call = {
            "load": lambda: store.load(created.id),
            "commit": lambda: store.commit(created.id, 1, append=[{"role": "user"}]),
            "list": store.list,
        }[op]
        error = _within(15, call)
        assert isinstance(error, StoreUnavailable), repr(error)
        proxy.cut()


async def test_the_async_store_gives_store_unavailable_when_the_server_goes_away(
    proxy: _Proxy, bucket: str
) -> None:
    async with AsyncNatsStore(proxy.url, bucket, connect_timeout=0.5, timeout=1.0) as store:
        created = await store.create(tether.Session(history=[{"role": "user"}] * 3))
        proxy.freeze()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.list(), 15)
        proxy.cut()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.load(created.id), 15)
        proxy.listen()
        assert (await store.load(created.id)).version == 1


def test_nothing_listening_fails_fast() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tether.open_store(f"nats://127.0.0.1:{port}/b?connect_timeout=0.5")
    with store:
        started = time.monotonic()
        error = _within(15, lambda: store.exists("anything"))
        assert isinstance(error, StoreUnavailable), repr(error)
        assert "cannot reach the NATS server" in str(error)
        assert time.monotonic() - started < 2  # one attempt, not a reconnect loop


async def test_a_listing_does_not_stop_at_an_early_end_marker(
    nats_server: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py signals "all delivered" with a None update when the server has nothing pending
    and the client has counted nothing received, which a busy machine also shows while the
    entries are still in flight. Such an early marker must not cut a listing short."""
    import nats.js.kv

    watch = nats.js.kv.KeyValue.watch

    async def watch_with_an_early_marker(self: Any, *args: Any, **kwargs: Any) -> Any:
        watcher = await watch(self, *args, **kwargs)
        updates = watcher.updates
        sent = False

        async def updates_after_a_marker(*a: Any, **k: Any) -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return None  # what the race delivers before the entries
            return await updates(*a, **k)  # type: ignore[no-untyped-call]

        watcher.updates = updates_after_a_marker  # type: ignore[method-assign]
        return watcher

    async with AsyncNatsStore(nats_server, bucket) as store:
        ids = {(await store.create(tether.Session(agent="early"))).id for _ in range(5)}
        monkeypatch.setattr(nats.js.kv.KeyValue, "watch", watch_with_an_early_marker)
        listed = [h.id async for h in store.iter_sessions(agent="early", limit=2)]
        assert sorted(listed) == sorted(ids)
        await store.delete(sorted(ids)[0])  # a delete marker is delivered, never listed
        listed = [h.id async for h in store.iter_sessions(agent="early", limit=10)]
        assert sorted(listed) == sorted(ids)[1:]
