"""WrappingStore / AsyncWrappingStore: a bare wrapper keeps the whole contract, and offers the
inner store's optional abilities exactly when the inner store has them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether import Session
from tether.encryption import AsyncEncryptedStore, EncryptedStore, Keyring
from tether.errors import InvalidRequest
from tether.stores import AsyncWrappingStore, WrappingStore
from tether.stores.memory import AsyncMemoryStore, MemoryStore
from tether.stores.sqlite import SQLiteStore
from tether.testing import AsyncStoreConformance, FakeClock, StoreConformance

RING = Keyring({"k1": Keyring.new_key()}, current="k1")
ABILITIES = ("fork_session", "restore", "purge_expired")


class TestWrappingStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path, clock: FakeClock) -> Iterator[tether.Store]:
        with WrappingStore(SQLiteStore(tmp_path / "w.db", clock=clock)) as store:
            yield store


class TestAsyncWrappingStore(AsyncStoreConformance):
    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[tether.AsyncStore]:
        async with AsyncWrappingStore(AsyncMemoryStore(clock=clock)) as store:
            yield store


class _Bare(tether.Store):
    """A store with the contract only, none of the optional abilities."""

    def __init__(self) -> None:
        self.memory = MemoryStore()

    def create(self, session: Session) -> Session:
        return self.memory.create(session)

    def load(self, session_id: str, **window: Any) -> Session:
        return self.memory.load(session_id, **window)

    def commit(self, session_id: str, expected_version: int, **kwargs: Any) -> int:
        return self.memory.commit(session_id, expected_version, **kwargs)

    def replace_history(self, session_id: str, expected_version: int, items: Any, **kw: Any) -> int:
        return self.memory.replace_history(session_id, expected_version, items, **kw)

    def delete(self, session_id: str, expected_version: int | None = None, **kw: Any) -> bool:
        return self.memory.delete(session_id, expected_version, **kw)

    def exists(self, session_id: str) -> bool:
        return self.memory.exists(session_id)

    def claim(self, session_id: str, owner: str, ttl: Any) -> tether.Lease:
        return self.memory.claim(session_id, owner, ttl)

    def renew(self, lease: tether.Lease, ttl: Any) -> tether.Lease:
        return self.memory.renew(lease, ttl)

    def release(self, lease: tether.Lease) -> None:
        self.memory.release(lease)


def _offered(store: object) -> set[str]:
    return {name for name in ABILITIES if callable(getattr(store, name, None))}


def test_abilities_are_offered_exactly_when_the_inner_store_has_them() -> None:
    assert _offered(MemoryStore()) == set(ABILITIES)
    assert _offered(WrappingStore(MemoryStore())) == set(ABILITIES)
    assert _offered(_Bare()) == set()
    assert _offered(WrappingStore(_Bare())) == set()
    # a wrapper of a wrapper: the middle one's abilities are the innermost store's
    assert _offered(WrappingStore(WrappingStore(_Bare()))) == set()
    # the encrypted store withholds fork_session: a fork must not share the parent's
    # ciphertexts, so the runtime copies the items through restore instead
    encrypted = EncryptedStore(MemoryStore(), RING)
    assert _offered(encrypted) == {"restore", "purge_expired"}
    assert _offered(EncryptedStore(_Bare(), RING)) == set()
    assert _offered(AsyncEncryptedStore(AsyncMemoryStore(), RING)) == {"restore", "purge_expired"}
    assert _offered(AsyncWrappingStore(AsyncMemoryStore())) == set(ABILITIES)


def test_a_forwarded_ability_is_the_inner_stores() -> None:
    inner = MemoryStore()
    store = WrappingStore(inner)
    parent = store.create(Session(id="p", history=[{"content": "a"}, {"content": "b"}]))
    store.fork_session(Session(id="c", parent_id="p", fork_seq=1), 1)
    assert [item["content"] for item in inner.load("c").history] == ["a"]
    store.restore(parent.model_copy(update={"id": "r"}))
    assert inner.load("r").history_len == 2
    assert store.purge_expired() == 0


def test_a_wrapper_overrides_only_what_it_changes() -> None:
    class Counting(WrappingStore):
        def __init__(self, inner: tether.Store) -> None:
            super().__init__(inner)
            self.loads = 0
            self.restored: list[str] = []

        def load(self, session_id: str, **window: Any) -> Session:
            self.loads += 1
            return super().load(session_id, **window)

        def wrap_restore(
            self,
            restore: Callable[..., Any],
            session: Session,
            *,
            replace: bool,
            expected_version: int | None,
        ) -> None:
            self.restored.append(session.id)
            super().wrap_restore(
                restore, session, replace=replace, expected_version=expected_version
            )

    store = Counting(MemoryStore())
    created = store.create(Session(id="s", history=[{"content": "a"}]))
    store.append("s", [{"content": "b"}])  # the inner store's atomic append: no load
    assert store.loads == 0
    assert [item["content"] for item in store.load("s").history] == ["a", "b"]
    assert list(store.iter_history("s", page_size=1)) == store.load("s").history
    assert store.loads == 4  # iter_history pages through this store's load (2 pages + 1)
    store.restore(created.model_copy(update={"id": "t"}))
    assert store.restored == ["t"]
    assert store.exists("t")


def test_only_a_store_of_the_same_side_is_wrapped() -> None:
    with pytest.raises(InvalidRequest, match="wraps a Store"):
        WrappingStore(AsyncMemoryStore())  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="wraps a AsyncStore"):
        AsyncWrappingStore(MemoryStore())  # type: ignore[arg-type]


def test_close_closes_the_inner_store(tmp_path: Path) -> None:
    inner = SQLiteStore(tmp_path / "c.db")
    with WrappingStore(inner) as store:
        store.create(Session(id="s"))
    with pytest.raises(tether.errors.TetherError):
        inner.load("s")


def test_commit_stamped_is_the_inner_stores_unless_commit_is_changed() -> None:
    """A bare wrapper passes the inner store's stamp on (the runtime then reads nothing back);
    a wrapper that changes commit gets its own commit run, reporting the version alone."""
    store = WrappingStore(MemoryStore())
    store.create(Session(id="s"))
    stamp = store.commit_stamped("s", 1, append=[{"content": "a"}])
    assert (stamp.version, stamp.reported) == (2, True)

    class Changing(WrappingStore):
        commits = 0

        def commit(self, session_id: str, expected_version: int, **kwargs: Any) -> int:
            self.commits += 1
            return super().commit(session_id, expected_version, **kwargs)

    changing = Changing(MemoryStore())
    changing.create(Session(id="s"))
    stamp = changing.commit_stamped("s", 1, append=[{"content": "a"}])
    assert (stamp.version, stamp.reported, changing.commits) == (2, False, 1)
    beneath = MemoryStore()
    encrypted = EncryptedStore(beneath, RING)
    encrypted.create(Session(id="s"))
    stamp = encrypted.commit_stamped("s", 1, append=[{"content": "secret"}])
    assert (stamp.version, stamp.rows) == (2, None)  # its own commit: sealed, no rows
    assert "tether_enc" in beneath.load("s").history[0]  # sealed
    assert encrypted.load("s").history[0]["content"] == "secret"


async def test_the_async_wrapper_passes_the_stamp_on_too() -> None:
    store = AsyncWrappingStore(AsyncMemoryStore())
    await store.create(Session(id="s"))
    stamp = await store.commit_stamped("s", 1, append=[{"content": "a"}])
    assert (stamp.version, stamp.reported) == (2, True)
