"""The key-value kit wraps a backend's own exceptions in StoreError (``__cause__`` kept), as
docs/errors.md promises for every store, and lets a TetherError the backend raises pass."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tether import Session
from tether.errors import SessionNotFound, StoreError, StoreUnavailable
from tether.stores import AsyncKVStore, KVStore
from tether.stores.kv_memory import AsyncDictKVBackend, DictKVBackend

from .test_kv_docs_example import _example


def test_the_docs_example_backends_sqlite_error_is_a_store_error(tmp_path: Path) -> None:
    backend = _example()["SQLiteKV"](str(tmp_path / "sessions.kv"))
    store = KVStore(backend)
    store.create(Session(id="s", history=[{"role": "user", "content": "hi"}]))
    backend.db.close()  # the database is gone from under the store
    with pytest.raises(StoreError, match=r"SQLiteKV\.get\(\) failed") as caught:
        store.load("s")
    assert isinstance(caught.value.__cause__, sqlite3.ProgrammingError)
    with pytest.raises(StoreError) as listed:
        store.list()
    assert isinstance(listed.value.__cause__, sqlite3.Error)


class _Failing(DictKVBackend):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error: Exception | None = None
        self._later = error

    def put(self, key: str, value: bytes, revision: Any) -> Any:
        if self.error is not None:
            raise self.error
        return super().put(key, value, revision)

    def fail(self) -> None:
        self.error = self._later


def test_a_backend_error_is_wrapped_and_its_own_tether_error_kept() -> None:
    backend = _Failing(OSError("disk full"))
    store = KVStore(backend)
    store.create(Session(id="s"))
    backend.fail()
    with pytest.raises(StoreError, match=r"_Failing\.put\(\) failed: OSError") as caught:
        store.commit("s", 1, append=[{"role": "user", "content": "hi"}])
    assert type(caught.value) is StoreError
    assert isinstance(caught.value.__cause__, OSError)

    unavailable = StoreUnavailable("the service is down; retry when it is back")
    backend = _Failing(unavailable)
    store = KVStore(backend)
    store.create(Session(id="s"))
    backend.fail()
    with pytest.raises(StoreUnavailable) as kept:
        store.commit("s", 1, append=[{"role": "user", "content": "hi"}])
    assert kept.value is unavailable  # as the backend raised it, not wrapped again
    with pytest.raises(SessionNotFound):  # the kit's own errors are unchanged
        store.load("missing")


class _AsyncFailing(AsyncDictKVBackend):
    async def get(self, key: str) -> Any:
        raise ConnectionResetError("reset by peer")


def test_the_async_kit_wraps_too() -> None:
    async def run() -> None:
        store = AsyncKVStore(_AsyncFailing())
        with pytest.raises(StoreError, match=r"_AsyncFailing\.get\(\) failed") as caught:
            await store.load("s")
        assert isinstance(caught.value.__cause__, ConnectionResetError)

    asyncio.run(run())
