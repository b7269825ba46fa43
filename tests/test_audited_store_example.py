"""The custom-store example of docs/stores.md passes the whole conformance suite."""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.testing import AsyncStoreConformance, StoreConformance

EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples")
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)

from audited_store import AsyncAuditedStore, AuditedStore  # noqa: E402


@pytest.fixture(autouse=True)
def _register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        tether._registry._SCHEMES,
        "audited",
        ("audited_store:AuditedStore", "audited_store:AsyncAuditedStore", None),
    )


def open_audited(url: str) -> tether.Store:
    """Opens the example store in a spawned process, where the test's registration is absent."""
    sys.path.insert(0, EXAMPLES)
    return AuditedStore.from_url(url)


def open_audited_async(url: str) -> tether.AsyncStore:
    sys.path.insert(0, EXAMPLES)
    return AsyncAuditedStore.from_url(url)


class TestAuditedStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[tether.Store]:
        with tether.open_store(f"audited:sqlite:///{tmp_path / 'a.db'}") as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(open_audited, f"audited:sqlite:///{tmp_path / 'a.db'}")


class TestAsyncAuditedStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[tether.AsyncStore]:
        async with tether.open_async_store(f"audited:file:{tmp_path / 'files'}") as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(open_audited_async, f"audited:file:{tmp_path / 'files'}")


def test_audit_trail_records_writes() -> None:
    store = tether.open_store("audited:memory://")
    assert isinstance(store, AuditedStore)
    created = store.create(tether.Session(id="s1"))
    store.commit("s1", created.version, append=[{"role": "user", "content": "hi"}])
    with pytest.raises(tether.ConflictError):
        store.commit("s1", 1)
    store.delete("s1")
    assert store.audit == [("create", "s1", 1), ("commit", "s1", 2), ("delete", "s1", 0)]
