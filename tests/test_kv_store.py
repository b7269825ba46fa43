"""The key-value kit over the reference dict backend: the whole conformance suite, plus what is
the kit's own (chunk layout, bounded writes per commit, split values, garbage collection)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import tether
from tether.stores.kv_memory import (
    AsyncDictKVBackend,
    AsyncDictKVStore,
    DictKVBackend,
    DictKVStore,
)
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance


class TestDictKVStore(StoreConformance):
    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[DictKVStore]:
        # small chunks and values so every test crosses chunk and part boundaries
        backend = DictKVBackend(max_value_size=64 * 1024)
        with DictKVStore(backend, clock=clock, chunk_items=4) as store:
            yield store


class TestAsyncDictKVStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[AsyncDictKVStore]:
        backend = AsyncDictKVBackend(DictKVBackend(max_value_size=64 * 1024))
        async with AsyncDictKVStore(backend, clock=clock, chunk_items=4) as store:
            yield store


def test_opens_by_url() -> None:
    with tether.open_store("kv-memory://?chunk_items=8") as store:
        assert isinstance(store, DictKVStore)
        created = store.create(tether.Session(history=[{"role": "user"}] * 20))
        assert len(store.load(created.id).history) == 20
