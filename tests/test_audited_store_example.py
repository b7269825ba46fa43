"""The custom-store example of docs/stores.md passes the whole conformance suite."""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.stores.file import AsyncFileStore
from tether.stores.sqlite import SQLiteStore
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance

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
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[tether.Store]:
        with AuditedStore(SQLiteStore(tmp_path / "a.db", clock=clock)) as store:
            yield store

    @pytest.fixture
    def store_opener(self, tmp_path: Path) -> Callable[[], Any]:
        return functools.partial(open_audited, f"audited:sqlite:///{tmp_path / 'a.db'}")


class TestAsyncAuditedStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path, clock: FakeClock) -> AsyncIterator[tether.AsyncStore]:
        async with AsyncAuditedStore(AsyncFileStore(tmp_path / "files", clock=clock)) as store:
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
    lease = store.claim("s1", "worker", 30)
    store.release(lease)
    store.delete("s1")
    assert store.audit == [
        ("create", "s1", 1),
        ("commit", "s1", 2),
        ("claim", "s1", 1),
        ("release", "s1", 1),
        ("delete", "s1", 0),
    ]


def test_opening_by_url_after_registration() -> None:
    with tether.open_store("audited:memory://") as store:
        assert isinstance(store, AuditedStore)


def test_the_wrapper_forwards_what_it_does_not_change_and_audits_every_write() -> None:
    """On the forwarding base, append / replace_tail are the inner store's atomic ones (no
    read-and-commit loop), restore is offered because the memory store has it, and each write
    is audited once."""
    store = tether.open_store("audited:memory://")
    assert isinstance(store, AuditedStore)
    created = store.create(tether.Session(id="s1", history=[{"content": "a"}]))
    version = store.append("s1", [{"content": "b"}])
    version = store.replace_tail("s1", version, 1, [{"content": "c"}])
    assert [item["content"] for item in store.load("s1").history] == ["a", "c"]
    restore = getattr(store, "restore", None)
    assert restore is not None  # the memory store's ability, offered through the wrapper
    restore(created.model_copy(update={"id": "s2"}))
    assert store.load("s2").history[0]["content"] == "a"
    assert store.audit == [
        ("create", "s1", 1),
        ("append", "s1", 2),
        ("replace_tail", "s1", 3),
        ("restore", "s2", 1),
    ]


async def test_the_async_wrapper_audits_its_writes_too() -> None:
    store = tether.open_async_store("audited:memory://")
    assert isinstance(store, AsyncAuditedStore)
    await store.create(tether.Session(id="s1"))
    await store.append("s1", [{"content": "b"}])
    assert (await store.load("s1")).history[0]["content"] == "b"
    assert store.audit == [("create", "s1", 1), ("append", "s1", 2)]
