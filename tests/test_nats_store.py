"""The NATS JetStream store (the key-value kit over a KV bucket): the whole conformance suite,
multi-process clauses included, on the local server. Each test gets its own bucket, deleted
afterwards; the server is never wiped."""

from __future__ import annotations

import functools
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import tether
from tether.errors import ConfigurationError, StoreUnavailable
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance

from .conftest import delete_nats_bucket, require_server

pytest.importorskip("nats", reason="the NATS store needs nats-py: pip install 'tether[nats]'")

from tether.stores.nats_async import AsyncNatsStore
from tether.stores.nats_sync import NatsStore


@pytest.fixture
def nats_server() -> str:
    return require_server("nats")


@pytest.fixture
def bucket(nats_server: str) -> Iterator[str]:
    name = f"tether_t{secrets.token_hex(6)}"
    yield name
    delete_nats_bucket(nats_server, name)


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


def test_bad_urls_and_an_absent_server_say_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="bucket"):
        tether.open_store("nats://127.0.0.1:4222/bad.bucket")
    with pytest.raises(ConfigurationError, match="unknown option"):
        tether.open_store("nats://127.0.0.1:4222/b?colour=red")
    store = tether.open_store("nats://127.0.0.1:1/b?connect_timeout=0.2")
    with store, pytest.raises(StoreUnavailable, match="cannot reach the NATS server"):
        store.exists("anything")
