"""The key-value kit's backend and blobs, async side; tools/unasync.py writes the sync side from it.

The kit's lower half: :class:`AsyncKVBackend` is the four methods a key-value service
provides; every call the kit makes goes through :class:`_Guarded`, so a backend's own
exception becomes a :class:`~tether.errors.StoreError` in one place. :class:`_AsyncKVBlobs`
is the layer the kit's store (``kv_async.py`` / ``kv_sync.py``) builds on: chunks and tails
written once, split into parts when too large, cached because their bytes never change. The
layout is in ``_kv_common.py`` and ``docs/kv.md``. ``AsyncKVBackend`` is imported from
``tether.stores.kv_async`` (or ``tether.stores``), not from here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

from .._time import Clock, now_micros
from ..errors import StoreError, TetherError
from . import _kv_common as kv
from ._kv_common import Head, Revision

_CACHE_SIZE = 256


class AsyncKVBackend(ABC):
    """A key-value service with compare-and-set on one key: the four methods you write.

    Keys are ASCII strings of letters, digits and ``-_=.`` (``.`` separates tokens). Values are
    bytes of at most :attr:`max_value_size`; the kit splits longer blobs into parts itself. A
    revision is whatever token your service gives a key's current value (a version number, an
    ETag, a mod-revision): the kit only hands it back to you.
    """

    max_value_size: int = 1 << 20
    """The largest value the service accepts, in bytes."""

    @abstractmethod
    async def get(self, key: str) -> tuple[bytes, Revision] | None:
        """The key's value and revision, or None if it is absent."""

    @abstractmethod
    async def put(self, key: str, value: bytes, revision: Revision | None) -> Revision | None:
        """Write ``value`` only if the key's revision is still ``revision`` (None: only if the
        key is absent). The new revision, or None if the condition failed (nothing written)."""

    @abstractmethod
    async def delete(self, key: str, revision: Revision) -> bool:
        """Delete the key only if its revision is still ``revision``; whether it did."""

    @abstractmethod
    async def keys(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix`` (which always ends with ``.``), any order."""

    async def scan(self, prefix: str) -> list[tuple[str, bytes, Revision]]:
        """(key, value, revision) of every key under ``prefix``. Override it if your service
        can return values with a listing (``list`` reads every header this way)."""
        found = []
        for key in await self.keys(prefix):
            got = await self.get(key)
            if got is not None:  # deleted since it was listed
                found.append((key, got[0], got[1]))
        return found

    async def close(self) -> None:  # noqa: B027 - optional: a backend with nothing to release
        """Release connections."""


@contextmanager
def _backend_errors(backend: AsyncKVBackend, call: str) -> Iterator[None]:
    """The one place a backend's own exception (``sqlite3.Error``, a botocore error, ...)
    becomes :class:`~tether.errors.StoreError` with it as ``__cause__``, as every store's
    driver errors do. A TetherError the backend raises itself (``StoreUnavailable``, say)
    passes as it is; so does a BaseException (a cancellation, an interpreter exit)."""
    try:
        yield
    except TetherError:
        raise
    except Exception as exc:
        raise StoreError(
            f"the key-value backend {type(backend).__name__}.{call}() failed: {exc!r}; "
            "fix the backend (its error is this one's __cause__) and retry"
        ) from exc


class _Guarded:
    """The store's backend as the kit calls it: every call through :func:`_backend_errors`.

    It reads ``store.backend`` at each call, so a backend assigned later is guarded too."""

    def __init__(self, store: _AsyncKVBlobs) -> None:
        self._store = store

    async def get(self, key: str) -> tuple[bytes, Revision] | None:
        backend = self._store.backend
        with _backend_errors(backend, "get"):
            return await backend.get(key)

    async def put(self, key: str, value: bytes, revision: Revision | None) -> Revision | None:
        backend = self._store.backend
        with _backend_errors(backend, "put"):
            return await backend.put(key, value, revision)

    async def delete(self, key: str, revision: Revision) -> bool:
        backend = self._store.backend
        with _backend_errors(backend, "delete"):
            return await backend.delete(key, revision)

    async def keys(self, prefix: str) -> list[str]:
        backend = self._store.backend
        with _backend_errors(backend, "keys"):
            return await backend.keys(prefix)

    async def scan(self, prefix: str) -> list[tuple[str, bytes, Revision]]:
        backend = self._store.backend
        with _backend_errors(backend, "scan"):
            return await backend.scan(prefix)

    async def close(self) -> None:
        backend = self._store.backend
        with _backend_errors(backend, "close"):
            await backend.close()


class _AsyncKVBlobs:
    """Blobs (chunks and tails) over a backend, the base of the kit's store.

    The store's ``__init__`` sets the attributes below; these methods only read and write
    blobs and know nothing of the contract."""

    backend: AsyncKVBackend
    _kv: _Guarded
    _clock: Clock
    _chunk: int
    # Chunk and tail keys are never rewritten with other bytes, so what was read once
    # stays true: a commit does not read its tail back, a load reads only what is new.
    _blobs: dict[str, tuple[list[bytes], Revision, int]]

    def _now(self) -> int:
        return now_micros(self._clock)

    @property
    def _max(self) -> int:
        return int(self.backend.max_value_size)

    # --- blobs: chunks and tails, split into parts when too large -----------------------------

    async def _put_blob(self, key: str, items: list[bytes]) -> None:
        value, parts = kv.frame(kv.join_items(items), self._max)
        for number, part in enumerate(parts, 1):
            await self._kv.put(kv.part_key(key, number), part, None)
        # A key that exists already holds these bytes (see _kv_common): nothing to do.
        rev = await self._kv.put(key, value, None)
        if rev is not None:
            self._remember(key, (items, rev, len(parts)))

    def _remember(self, key: str, entry: tuple[list[bytes], Revision, int]) -> None:
        if len(self._blobs) >= _CACHE_SIZE:
            self._blobs.clear()
        self._blobs[key] = entry

    async def _get_blob(self, key: str) -> tuple[list[bytes], Revision, int] | None:
        cached = self._blobs.get(key)
        if cached is not None:
            return cached
        got = await self._kv.get(key)
        if got is None:
            return None
        value, rev = got
        count = kv.split_count(value)
        if count:
            pieces = []
            for number in range(1, count + 1):
                part = await self._kv.get(kv.part_key(key, number))
                if part is None:
                    return None
                pieces.append(part[0])
            value = b"".join(pieces)
        entry = (kv.split_items(value), rev, count)
        self._remember(key, entry)
        return entry

    async def _drop_blob(self, key: str) -> None:
        """Delete a blob no header references any more (best effort: leftovers are garbage)."""
        got = await self._kv.get(key)
        self._blobs.pop(key, None)
        if got is None:
            return
        for number in range(1, kv.split_count(got[0]) + 1):
            part = await self._kv.get(kv.part_key(key, number))
            if part is not None:
                await self._kv.delete(kv.part_key(key, number), part[1])
        await self._kv.delete(key, got[1])

    async def _drop_history(self, head: Head) -> None:
        for key in head.chunk_keys():
            await self._drop_blob(key)
        tail = head.tail_key()
        if tail is not None:
            await self._drop_blob(tail)

    async def _write_generation(
        self, session_id: str, gen: str, items: list[bytes]
    ) -> tuple[int, str | None]:
        """Write a new generation's items (no header names it yet); (sealed, tail nonce)."""
        chunks, rest = kv.layout(items, self._chunk)
        for index, chunk in enumerate(chunks):
            await self._put_blob(kv.chunk_key(session_id, gen, index), chunk)
        nonce = None
        if rest:
            nonce = kv.new_token(self._now())
            await self._put_blob(kv.tail_key(session_id, gen, nonce), rest)
        return len(chunks), nonce

    async def _read_positions(self, head: Head, lo: int, hi: int) -> list[bytes] | None:
        """Items at positions ``[lo, hi)``; None if a key was replaced under us (read again)."""
        out: list[bytes] = []
        if lo >= hi:
            return out
        size, sealed_end = head.chunk, head.sealed * head.chunk
        index = lo // size
        while index * size < min(hi, sealed_end):
            got = await self._get_blob(kv.chunk_key(head.doc["id"], head.gen, index))
            if got is None:
                return None
            base = index * size
            out.extend(got[0][max(lo - base, 0) : hi - base])
            index += 1
        if hi > sealed_end:
            tail_key = head.tail_key()
            got = None if tail_key is None else await self._get_blob(tail_key)
            if got is None:
                return None
            out.extend(got[0][max(lo - sealed_end, 0) : hi - sealed_end])
        return out
