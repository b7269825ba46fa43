"""NATS JetStream key-value store, async side (``nats://host:4222/bucket``; ``tether[nats]``).

The whole store is the key-value kit (:mod:`tether.stores.kv_async`) over one JetStream KV
bucket: this module is only the four backend methods, through the official ``nats-py`` client.
A KV entry's revision is its stream sequence, and JetStream checks an expected revision on
every write (``update(..., last=)``, ``create``, ``delete(..., last=)``), which is the
compare-and-set the kit needs. The sync store (``nats_sync.py``) runs this one on a private
event loop, as ``nats-py`` has no sync client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from .._time import Clock, system_clock
from .._urls import as_bool, as_float, parse_store_url, redact
from ..errors import ConfigurationError, StoreUnavailable
from ._kv_common import DEFAULT_CHUNK_ITEMS, Revision
from .kv_async import AsyncKVBackend, AsyncKVStore

__all__ = ["AsyncNatsBackend", "AsyncNatsStore", "NatsOptions", "parse_nats_url"]

_T = TypeVar("_T")
_BUCKET = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WRONG_LAST = (10071, 10164)  # JetStream: wrong last sequence (the compare-and-set failed)
DEFAULT_BUCKET = "tether"
# What a value may take of the server's max_payload: the rest is room for message headers.
_HEADROOM = 8 * 1024


class NatsOptions:
    """A ``nats://`` URL taken apart: the server, the bucket and the store's options."""

    def __init__(self, url: str) -> None:
        netloc, path, options = parse_store_url(
            url,
            "nats",
            {
                "chunk_items": int,
                "create": as_bool,
                "connect_timeout": as_float,
                "timeout": as_float,
            },
        )
        bucket = path.strip("/") or DEFAULT_BUCKET
        if not _BUCKET.fullmatch(bucket):
            raise ConfigurationError(
                f"bucket {bucket!r} in {redact(url)!r} is not a NATS KV bucket name: "
                "letters, digits, '_' and '-' only"
            )
        self.server = f"nats://{netloc or '127.0.0.1:4222'}"
        self.bucket = bucket
        self.chunk_items = int(options.get("chunk_items", DEFAULT_CHUNK_ITEMS))
        self.create = bool(options.get("create", True))
        self.connect_timeout = float(options.get("connect_timeout", 2.0))
        self.timeout = float(options.get("timeout", 5.0))


def parse_nats_url(url: str) -> NatsOptions:
    return NatsOptions(url)


class AsyncNatsBackend(AsyncKVBackend):
    """One JetStream KV bucket as a kit backend. Connects on first use.

    The bucket is created (history 1, direct gets) if it does not exist and ``create`` is
    true. Deletes leave JetStream's small delete markers; ``nats kv`` (or ``purge_deletes``)
    can compact them.
    """

    def __init__(
        self,
        server: str = "nats://127.0.0.1:4222",
        bucket: str = DEFAULT_BUCKET,
        *,
        create: bool = True,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        self.server, self.bucket, self.create = server, bucket, create
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.max_value_size = (1 << 20) - _HEADROOM  # the server's default, until connected
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._lock: asyncio.Lock | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is not None:
            return self._kv
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._kv is None:
                self._kv = await self._connect()
        return self._kv

    async def _connect(self) -> KeyValue:
        try:
            nc = await nats.connect(
                self.server,
                connect_timeout=self.connect_timeout,
                max_reconnect_attempts=3,
                allow_reconnect=True,
            )
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
            raise StoreUnavailable(
                f"cannot reach the NATS server at {redact(self.server)} ({exc}); start it "
                "(nats-server -js) or fix the URL"
            ) from exc
        self._nc = nc
        js = nc.jetstream(timeout=self.timeout)
        try:
            kv = await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            if not self.create:
                raise ConfigurationError(
                    f"NATS KV bucket {self.bucket!r} does not exist; create it or drop "
                    "create=false from the URL"
                ) from None
            try:
                kv = await js.create_key_value(bucket=self.bucket, history=1, direct=True)
            except nats.js.errors.APIError:  # another process created it meanwhile
                kv = await js.key_value(self.bucket)
        except nats.js.errors.APIError as exc:
            raise ConfigurationError(
                f"NATS at {redact(self.server)} has no JetStream ({exc}); start the server with -js"
            ) from exc
        self.max_value_size = max(1024, nc.max_payload - _HEADROOM)
        return kv

    async def _call(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except (nats.errors.ConnectionClosedError, nats.errors.TimeoutError) as exc:
            raise StoreUnavailable(f"NATS at {redact(self.server)}: {exc}") from exc

    async def get(self, key: str) -> tuple[bytes, Revision] | None:
        kv = await self._bucket()
        try:
            entry = await self._call(kv.get(key))
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value or b"", entry.revision

    async def put(self, key: str, value: bytes, revision: Revision | None) -> Revision | None:
        kv = await self._bucket()
        try:
            if revision is None:
                return await self._call(kv.create(key, value))
            return await self._call(kv.update(key, value, last=revision))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def delete(self, key: str, revision: Revision) -> bool:
        kv = await self._bucket()
        try:
            await self._call(kv.delete(key, last=revision))
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST:
                return False
            raise
        return True

    async def _watch(self, prefix: str, meta_only: bool) -> list[Any]:
        kv = await self._bucket()
        watcher = await self._call(kv.watch(prefix + ">", ignore_deletes=True, meta_only=meta_only))
        entries = []
        try:
            async for entry in watcher:
                if entry is None:  # the current values are all delivered
                    break
                entries.append(entry)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return entries

    async def keys(self, prefix: str) -> list[str]:
        return [entry.key for entry in await self._watch(prefix, True)]

    async def scan(self, prefix: str) -> list[tuple[str, bytes, Revision]]:
        # One ordered consumer delivers every header with its value: no get per key.
        return [(e.key, e.value or b"", e.revision) for e in await self._watch(prefix, False)]

    async def close(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None and not nc.is_closed:
            await nc.close()


class AsyncNatsStore(AsyncKVStore):
    """A tether store in a NATS JetStream KV bucket: ``nats://host:4222/bucket``."""

    backend: AsyncNatsBackend

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
        backend = AsyncNatsBackend(
            server, bucket, create=create, connect_timeout=connect_timeout, timeout=timeout
        )
        super().__init__(backend, clock=clock, chunk_items=chunk_items)

    @classmethod
    def from_url(cls, url: str) -> AsyncNatsStore:
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
