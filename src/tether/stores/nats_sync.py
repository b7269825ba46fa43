"""NATS JetStream key-value store, sync side (``nats://host:4222/bucket``; ``tether[nats]``).

``nats-py`` is asyncio only, so the sync backend owns a private event loop in a daemon thread
and runs the async backend's calls there (one hop per key operation). Everything else is the
sync kit, :class:`~tether.stores.kv_sync.KVStore`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._time import Clock, system_clock
from ._kv_common import DEFAULT_CHUNK_ITEMS, Revision
from .kv_sync import KVBackend, KVStore
from .nats_async import DEFAULT_BUCKET, AsyncNatsBackend, NatsOptions

__all__ = ["NatsBackend", "NatsStore"]

_T = TypeVar("_T")


class NatsBackend(KVBackend):
    """:class:`~tether.stores.nats_async.AsyncNatsBackend` behind blocking calls."""

    def __init__(
        self,
        server: str = "nats://127.0.0.1:4222",
        bucket: str = DEFAULT_BUCKET,
        *,
        create: bool = True,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        self.aio = AsyncNatsBackend(
            server, bucket, create=create, connect_timeout=connect_timeout, timeout=timeout
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tether-nats-{bucket}", daemon=True
        )
        self._thread.start()

    @property  # read from the async backend, which learns it on connecting
    def max_value_size(self) -> int:  # type: ignore[override]
        return self.aio.max_value_size

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("this NATS store is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def get(self, key: str) -> tuple[bytes, Revision] | None:
        return self._run(self.aio.get(key))

    def put(self, key: str, value: bytes, revision: Revision | None) -> Revision | None:
        return self._run(self.aio.put(key, value, revision))

    def delete(self, key: str, revision: Revision) -> bool:
        return self._run(self.aio.delete(key, revision))

    def keys(self, prefix: str) -> list[str]:
        return self._run(self.aio.keys(prefix))

    def scan(self, prefix: str) -> list[tuple[str, bytes, Revision]]:
        return self._run(self.aio.scan(prefix))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.aio.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


class NatsStore(KVStore):
    """A tether store in a NATS JetStream KV bucket: ``nats://host:4222/bucket``."""

    backend: NatsBackend

    def __init__(
        self,
        server: str = "nats://127.0.0.1:4222",
        bucket: str = DEFAULT_BUCKET,
        *,
        clock: Clock = system_clock,
        chunk_items: int = DEFAULT_CHUNK_ITEMS,
        create: bool = True,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        backend = NatsBackend(
            server, bucket, create=create, connect_timeout=connect_timeout, timeout=timeout
        )
        super().__init__(backend, clock=clock, chunk_items=chunk_items)

    @classmethod
    def from_url(cls, url: str) -> NatsStore:
        """``nats://host:port/bucket?chunk_items=32&create=true&connect_timeout=2&timeout=5``"""
        o = NatsOptions(url)
        return cls(
            o.server,
            o.bucket,
            chunk_items=o.chunk_items,
            create=o.create,
            connect_timeout=o.connect_timeout,
            timeout=o.timeout,
        )
