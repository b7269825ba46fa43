"""The reference key-value backend: a dict of this process, with compare-and-set.

It is the kit's example and its test bed (``kv-memory://``): every write is a
compare-and-set under one lock, so it behaves like a real service that offers exactly the four
methods of :class:`~tether.stores.kv_sync.KVBackend` and nothing more.
"""

from __future__ import annotations

import itertools
import threading

from .._time import Clock, system_clock
from .._urls import KV_MEMORY_OPTIONS, parse_store_url
from ._kv_common import Revision
from .kv_async import AsyncKVBackend, AsyncKVStore
from .kv_sync import KVBackend, KVStore

__all__ = ["AsyncDictKVBackend", "AsyncDictKVStore", "DictKVBackend", "DictKVStore"]


class DictKVBackend(KVBackend):
    """Keys in a dict; a revision is a counter that grows with every write."""

    def __init__(self, *, max_value_size: int = 1 << 20) -> None:
        self.max_value_size = max_value_size
        self.data: dict[str, tuple[bytes, int]] = {}
        self._lock = threading.Lock()
        self._revisions = itertools.count(1)

    def get(self, key: str) -> tuple[bytes, Revision] | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes, revision: Revision | None) -> Revision | None:
        with self._lock:
            current = self.data.get(key)
            if (current[1] if current else None) != revision:
                return None
            new = next(self._revisions)
            self.data[key] = (bytes(value), new)
            return new

    def delete(self, key: str, revision: Revision) -> bool:
        with self._lock:
            current = self.data.get(key)
            if current is None or current[1] != revision:
                return False
            del self.data[key]
            return True

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return [key for key in self.data if key.startswith(prefix)]


class AsyncDictKVBackend(AsyncKVBackend):
    """The async face of a :class:`DictKVBackend` (calls never wait, so they run inline)."""

    def __init__(self, backend: DictKVBackend | None = None) -> None:
        self.sync = backend if backend is not None else DictKVBackend()
        self.max_value_size = self.sync.max_value_size

    async def get(self, key: str) -> tuple[bytes, Revision] | None:
        return self.sync.get(key)

    async def put(self, key: str, value: bytes, revision: Revision | None) -> Revision | None:
        return self.sync.put(key, value, revision)

    async def delete(self, key: str, revision: Revision) -> bool:
        return self.sync.delete(key, revision)

    async def keys(self, prefix: str) -> list[str]:
        return self.sync.keys(prefix)


def _options(url: str) -> dict[str, int]:
    return parse_store_url(url, "kv-memory", KV_MEMORY_OPTIONS)[2]


class DictKVStore(KVStore):
    """A :class:`~tether.stores.kv_sync.KVStore` over a new :class:`DictKVBackend`."""

    def __init__(
        self,
        backend: DictKVBackend | None = None,
        *,
        clock: Clock = system_clock,
        chunk_items: int = 32,
    ) -> None:
        super().__init__(backend or DictKVBackend(), clock=clock, chunk_items=chunk_items)

    @classmethod
    def from_url(cls, url: str) -> DictKVStore:
        """``kv-memory://?chunk_items=32&max_value_size=1048576``: a new, empty store."""
        options = _options(url)
        backend = DictKVBackend(max_value_size=options.get("max_value_size", 1 << 20))
        return cls(backend, chunk_items=options.get("chunk_items", 32))


class AsyncDictKVStore(AsyncKVStore):
    """The async twin of :class:`DictKVStore`."""

    def __init__(
        self,
        backend: AsyncDictKVBackend | None = None,
        *,
        clock: Clock = system_clock,
        chunk_items: int = 32,
    ) -> None:
        super().__init__(backend or AsyncDictKVBackend(), clock=clock, chunk_items=chunk_items)

    @classmethod
    def from_url(cls, url: str) -> AsyncDictKVStore:
        options = _options(url)
        backend = DictKVBackend(max_value_size=options.get("max_value_size", 1 << 20))
        return cls(AsyncDictKVBackend(backend), chunk_items=options.get("chunk_items", 32))
