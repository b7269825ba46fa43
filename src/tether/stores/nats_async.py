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
import contextlib
import logging
import re
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from .._time import Clock, system_clock
from .._urls import NATS_OPTIONS, parse_store_url, redact
from ..errors import ConfigurationError, StoreError, StoreUnavailable
from ._kv_common import DEFAULT_CHUNK_ITEMS, Revision
from .kv_async import AsyncKVBackend, AsyncKVStore

__all__ = ["AsyncNatsBackend", "AsyncNatsStore", "NatsOptions", "parse_nats_url"]

_T = TypeVar("_T")
log = logging.getLogger("tether.stores.nats")
# What nats-py raises: its own errors, the socket's, and asyncio's timeout.
_NATS_ERRORS = (nats.errors.Error, OSError, asyncio.TimeoutError)
# Of those, the ones that mean the server is gone or not answering (not a refusal).
_UNREACHABLE = (
    nats.errors.ConnectionClosedError,
    nats.errors.TimeoutError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    OSError,
    asyncio.TimeoutError,
)
_BUCKET = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WRONG_LAST = (10071, 10164)  # JetStream: wrong last sequence (the compare-and-set failed)
DEFAULT_BUCKET = "tether"
# What a value may take of the server's max_payload: the rest is room for message headers.
_HEADROOM = 8 * 1024


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_STORE_FAILED = 10049
"""JetStream's error code for a stream whose storage could not be created."""
_CREATE_ATTEMPTS = 5
"""How often a bucket's creation is asked for when the server answers :data:`_STORE_FAILED`."""


async def _log_error(exc: Exception) -> None:
    # nats-py reports connection errors here as well as raising them to the call: the call's
    # StoreUnavailable says it all, so this is only a debug trace (its default logs an error).
    log.debug("nats-py: %s", _describe(exc))


class NatsOptions:
    """A ``nats://`` URL taken apart: the server, the bucket and the store's options."""

    def __init__(self, url: str) -> None:
        netloc, path, options = parse_store_url(url, "nats", NATS_OPTIONS)
        bucket = path.strip("/") or DEFAULT_BUCKET
        if not _BUCKET.fullmatch(bucket):
            raise ConfigurationError(
                f"bucket {bucket!r} in {redact(url)!r} is not a NATS KV bucket name: "
                "letters, digits, '_' and '-' only"
            )
        self.server = f"nats://{netloc or '127.0.0.1:4222'}"
        self.bucket = bucket
        options = {**NATS_OPTIONS.defaults(), **options}  # the defaults live in the table
        self.chunk_items = int(options["chunk_items"])
        self.create = bool(options["create"])
        self.connect_timeout = float(options["connect_timeout"])
        self.timeout = float(options["timeout"])


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
        nc, kv = self._nc, self._kv
        if kv is not None and nc is not None and not nc.is_closed:
            return kv
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._kv is None or self._nc is None or self._nc.is_closed:
                # First use, or the connection was lost: a lost connection is never retried
                # in the background (a call fails fast instead), so reconnect here, on the
                # next call after the server came back.
                await self._drop_connection()
                self._kv = await self._connect()
            return self._kv

    async def _drop_connection(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(*_NATS_ERRORS):  # a dead connection has nothing to flush
                await nc.close()

    async def _connect(self) -> KeyValue:
        try:
            # No reconnect loop, neither at the first connect (nats-py would retry for
            # seconds) nor after a lost connection (calls would queue behind it): a call
            # fails with StoreUnavailable within its timeout, and the next one reconnects.
            nc = await nats.connect(
                self.server,
                connect_timeout=self.connect_timeout,
                allow_reconnect=False,
                # nats-py's first connect retries a server until it failed more than this
                # many times, waiting this long between tries: two tries, 0.1 s apart.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=_log_error,
            )
        except _NATS_ERRORS as exc:
            raise StoreUnavailable(
                f"cannot reach the NATS server at {redact(self.server)} ({_describe(exc)}); "
                "start it (nats-server -js) or fix the URL"
            ) from exc
        self._nc = nc
        try:
            kv = await self._open_bucket(nc.jetstream(timeout=self.timeout))
        except BaseException:
            await self._drop_connection()
            raise
        self.max_value_size = max(1024, nc.max_payload - _HEADROOM)
        return kv

    async def _open_bucket(self, js: Any) -> KeyValue:
        try:
            try:
                return cast(KeyValue, await js.key_value(self.bucket))
            except nats.js.errors.BucketNotFoundError:
                if not self.create:
                    raise ConfigurationError(
                        f"NATS KV bucket {self.bucket!r} does not exist; create it or drop "
                        "create=false from the URL"
                    ) from None
            for attempt in range(_CREATE_ATTEMPTS):
                try:
                    kv = await js.create_key_value(bucket=self.bucket, history=1, direct=True)
                except nats.js.errors.BadRequestError:  # another process created it meanwhile
                    kv = await js.key_value(self.bucket)
                except nats.js.errors.ServerError as exc:
                    # nats-server removes an account's stream directory when its last stream
                    # is deleted; a stream created at that moment fails to make its own
                    # directory (err_code 10049) and succeeds when asked again
                    if exc.err_code != _STORE_FAILED or attempt + 1 == _CREATE_ATTEMPTS:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                return cast(KeyValue, kv)
            raise AssertionError("unreachable: the last attempt returns or raises")
        except nats.js.errors.ServiceUnavailableError as exc:
            raise ConfigurationError(
                f"NATS at {redact(self.server)} has no JetStream ({_describe(exc)}); start the "
                "server with -js"
            ) from exc
        except _NATS_ERRORS as exc:
            raise self._failure(exc, f"opening the KV bucket {self.bucket!r}") from exc

    def _failure(self, exc: BaseException, what: str) -> StoreError:
        """A nats-py error as a tether error: StoreUnavailable when the server cannot be
        reached or does not answer in time, StoreError for anything it refused."""
        where = redact(self.server)
        if isinstance(exc, _UNREACHABLE):
            return StoreUnavailable(
                f"NATS at {where} did not answer {what} ({_describe(exc)}; timeout "
                f"{self.timeout:g} s). The write may or may not have happened if it was one; "
                "check that the server is up and retry when it is back."
            )
        return StoreError(f"NATS at {where} failed {what}: {_describe(exc)}")

    async def _call(self, call: Awaitable[_T], what: str) -> _T:
        """One request. nats-py bounds each by the timeout given to its JetStream context."""
        try:
            return await call
        except _NATS_ERRORS as exc:
            raise self._failure(exc, what) from exc

    async def get(self, key: str) -> tuple[bytes, Revision] | None:
        kv = await self._bucket()
        try:
            entry = await self._call(kv.get(key), f"a read of {key!r}")
        except StoreError as exc:
            if isinstance(exc.__cause__, nats.js.errors.KeyNotFoundError):
                return None
            raise
        return entry.value or b"", entry.revision

    async def put(self, key: str, value: bytes, revision: Revision | None) -> Revision | None:
        kv = await self._bucket()
        write = kv.create(key, value) if revision is None else kv.update(key, value, last=revision)
        try:
            return await self._call(write, f"a write of {key!r}")
        except StoreError as exc:
            if isinstance(exc.__cause__, nats.js.errors.KeyWrongLastSequenceError):
                return None  # the compare-and-set failed: nothing written
            raise

    async def delete(self, key: str, revision: Revision) -> bool:
        kv = await self._bucket()
        try:
            await self._call(kv.delete(key, last=revision), f"a delete of {key!r}")
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, nats.js.errors.APIError) and cause.err_code in _WRONG_LAST:
                return False
            raise
        return True

    async def _watch(self, prefix: str, meta_only: bool) -> list[Any]:
        kv = await self._bucket()
        what = f"a listing of {prefix!r}"
        # Deletes are delivered (and dropped below) so that every message the consumer owes
        # becomes an entry whose ``delta`` counts down to 0. nats-py's own "all delivered"
        # marker (None) is not trusted: it is sent when the server reports nothing pending and
        # the client has counted nothing received, which is also true while the messages are
        # still in flight on a busy machine; stopping there would list some sessions and
        # silently leave out the rest.
        subscribe = kv.watch(prefix + ">", ignore_deletes=False, meta_only=meta_only)
        watcher = await self._call(asyncio.wait_for(subscribe, self.timeout * 2), what)
        entries = []
        try:
            consumer = watcher._sub
            assert consumer is not None  # set by watch() before it returns
            info = await self._call(consumer.consumer_info(), what)
            owed = info.delivered.consumer_seq + info.num_pending
            while owed:
                # Each entry within the timeout: a server that went away mid-listing would
                # otherwise leave the iteration waiting forever.
                update = watcher.updates(timeout=self.timeout)  # type: ignore[no-untyped-call]
                entry = await self._call(update, what)
                if entry is None:  # the library's marker: possibly early, see above
                    continue
                if entry.operation is None:  # a value, not a delete or purge marker
                    entries.append(entry)
                if entry.delta == 0:  # the newest message under the prefix is in
                    break
        finally:
            with contextlib.suppress(*_NATS_ERRORS):  # a dead connection has no consumer left
                await watcher.stop()  # type: ignore[no-untyped-call]
        return entries

    async def keys(self, prefix: str) -> list[str]:
        return [entry.key for entry in await self._watch(prefix, True)]

    async def scan(self, prefix: str) -> list[tuple[str, bytes, Revision]]:
        # One ordered consumer delivers every header with its value: no get per key.
        return [(e.key, e.value or b"", e.revision) for e in await self._watch(prefix, False)]

    async def close(self) -> None:
        await self._drop_connection()


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
