"""The store base classes: the public methods check once and call the protected ones; a store
that overrides the public methods instead keeps working; one that implements neither is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from tether import AsyncStore, Lease, Session, Store
from tether._core import Doc
from tether._time import Clock, system_clock
from tether.errors import InvalidRequest, InvalidSessionData, InvalidSessionId
from tether.models import Page, StoredItem
from tether.stores.base import PROTECTED_METHODS, CheckedItems, NewItems
from tether.stores.memory import MemoryStore
from tether.testing import (
    CoreConformance,
    FakeClock,
    ForkConformance,
    PurgeConformance,
    RestoreConformance,
    StoreConformance,
)


class ProtectedOnly(Store):
    """Implements only the protected methods, by delegating to a memory store's; records every
    call that reaches it, so a test can tell a refused argument never got this far."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self.inner = MemoryStore(clock=clock)
        self.calls: list[str] = []

    def _create(self, session: Session) -> Session:
        self.calls.append("create")
        return self.inner._create(session)

    def _load(
        self, session_id: str, *, last: int | None, after: int | None, limit: int | None
    ) -> Session:
        self.calls.append("load")
        return self.inner._load(session_id, last=last, after=after, limit=limit)

    def _commit(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: Doc,
        lease: Lease | None,
    ) -> int:
        self.calls.append("commit")
        return self.inner._commit(session_id, expected_version, items, changes=changes, lease=lease)

    def _replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: CheckedItems,
        *,
        changes: Doc,
        lease: Lease | None,
    ) -> int:
        self.calls.append("replace_history")
        return self.inner._replace_history(
            session_id, expected_version, items, changes=changes, lease=lease
        )

    def _replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: CheckedItems,
        *,
        changes: Doc,
        lease: Lease | None,
    ) -> int:
        self.calls.append("replace_tail")
        return self.inner._replace_tail(
            session_id, expected_version, after, items, changes=changes, lease=lease
        )

    def _items_by_key(self, session_id: str, keys: list[str]) -> dict[str, StoredItem]:
        self.calls.append("items_by_key")
        return self.inner._items_by_key(session_id, keys)

    def _list_page(self, query: Any) -> Page:
        self.calls.append("list")
        return self.inner._list_page(query)

    def _delete(
        self, session_id: str, expected_version: int | None, *, lease: Lease | None, force: bool
    ) -> bool:
        self.calls.append("delete")
        return self.inner._delete(session_id, expected_version, lease=lease, force=force)

    def _exists(self, session_id: str) -> bool:
        self.calls.append("exists")
        return self.inner._exists(session_id)

    def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
        self.calls.append("claim")
        return self.inner._claim(session_id, owner, ttl)

    def _renew(self, lease: Lease, ttl: int) -> Lease:
        self.calls.append("renew")
        return self.inner._renew(lease, ttl)

    def _release(self, lease: Lease) -> None:
        self.calls.append("release")
        self.inner._release(lease)


class PublicOnly(Store):
    """A store written before the protected methods: it overrides every public method."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self.inner = MemoryStore(clock=clock)

    def create(self, session: Session) -> Session:
        return self.inner.create(session)

    def load(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Session:
        return self.inner.load(session_id, last=last, after=after, limit=limit)

    def commit(
        self,
        session_id: str,
        expected_version: int,
        *,
        append: NewItems = (),
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        return self.inner.commit(
            session_id, expected_version, append=append, changes=changes, lease=lease
        )

    def replace_history(
        self,
        session_id: str,
        expected_version: int,
        items: NewItems,
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        return self.inner.replace_history(
            session_id, expected_version, items, changes=changes, lease=lease
        )

    def replace_tail(
        self,
        session_id: str,
        expected_version: int,
        after: int,
        items: NewItems = (),
        *,
        changes: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> int:
        return self.inner.replace_tail(
            session_id, expected_version, after, items, changes=changes, lease=lease
        )

    def append(self, session_id: str, items: NewItems, *, lease: Lease | None = None) -> int:
        return self.inner.append(session_id, items, lease=lease)

    def items_by_key(self, session_id: str, keys: Any) -> dict[str, StoredItem]:
        return self.inner.items_by_key(session_id, keys)

    def list(self, **filters: Any) -> Page:
        return self.inner.list(**filters)

    def delete(
        self,
        session_id: str,
        expected_version: int | None = None,
        *,
        lease: Lease | None = None,
        force: bool = False,
    ) -> bool:
        return self.inner.delete(session_id, expected_version, lease=lease, force=force)

    def exists(self, session_id: str) -> bool:
        return self.inner.exists(session_id)

    def claim(self, session_id: str, owner: str, ttl: float | timedelta) -> Lease:
        return self.inner.claim(session_id, owner, ttl)

    def renew(self, lease: Lease, ttl: float | timedelta) -> Lease:
        return self.inner.renew(lease, ttl)

    def release(self, lease: Lease) -> None:
        self.inner.release(lease)


class TestProtectedOnlyConforms(StoreConformance):
    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[Store]:
        with ProtectedOnly(clock) as store:
            yield store


class TestPublicOnlyConforms(StoreConformance):
    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[Store]:
        with PublicOnly(clock) as store:
            yield store


def test_a_store_implementing_neither_is_refused_with_a_clear_error() -> None:
    class Neither(Store):
        def _create(self, session: Session) -> Session:
            return session

    with pytest.raises(TypeError) as caught:
        Neither()
    message = str(caught.value)
    assert "cannot instantiate Neither" in message
    for pair in ("commit() / _commit()", "load() / _load()", "release() / _release()"):
        assert pair in message
    assert "create() / _create()" not in message
    assert "docs/stores.md" in message


def test_the_async_base_refuses_the_same_way() -> None:
    class Neither(AsyncStore):
        async def exists(self, session_id: str) -> bool:
            return False

    with pytest.raises(TypeError, match=r"commit\(\) / _commit\(\)") as caught:
        Neither()
    assert "exists() / _exists()" not in str(caught.value)


def test_public_overrides_mark_only_abstract_protected_methods() -> None:
    class Audited(MemoryStore):
        """Overrides a public method over a store that has the protected one: keeps it."""

        def commit(self, *args: Any, **kwargs: Any) -> int:
            return super().commit(*args, **kwargs)

    assert Audited._commit is MemoryStore._commit
    store = Audited()
    created = store.create(Session())
    assert store.commit(created.id, 1, append=[{"n": 1}]) == 2
    # on a store with no protected method, the marker says what happened if called directly
    with pytest.raises(NotImplementedError, match=r"overrides commit\(\) and has no _commit"):
        PublicOnly()._commit("s", 1, [], changes={}, lease=None)


def test_every_public_method_has_one_protected_method() -> None:
    for public, protected in PROTECTED_METHODS.items():
        for base in (Store, AsyncStore):
            assert callable(getattr(base, public)), (base, public)
            assert callable(getattr(base, protected)), (base, protected)


BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], type[Exception]]] = [
    ("load", ("bad id!",), {}, InvalidSessionId),
    ("load", ("s",), {"last": -1}, InvalidRequest),
    ("load", ("s",), {"limit": 0}, InvalidRequest),
    ("commit", ("s", "1"), {}, InvalidRequest),
    ("commit", ("s", 1), {"changes": {"version": 3}}, InvalidRequest),
    ("commit", ("s", 1), {"append": {"role": "user"}}, InvalidSessionData),
    ("commit", ("s", 1), {"lease": "token"}, InvalidRequest),
    ("replace_history", ("s", 1, "items"), {}, InvalidSessionData),
    ("replace_tail", ("s", 1, -1), {}, InvalidRequest),
    ("append", ("s", 5), {}, InvalidSessionData),
    ("items_by_key", ("s", "key"), {}, InvalidRequest),
    ("delete", ("s",), {"force": "yes"}, InvalidRequest),
    ("exists", ("",), {}, InvalidSessionId),
    ("claim", ("s", "", 10), {}, InvalidRequest),
    ("claim", ("s", "me", -1), {}, InvalidRequest),
    ("renew", ("not a lease", 10), {}, InvalidRequest),
    ("release", (None,), {}, InvalidRequest),
    ("list", (), {"limit": 0}, InvalidRequest),
    ("create", ({"id": "s"},), {}, InvalidRequest),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "error"), BAD_CALLS)
def test_bad_arguments_raise_before_the_store_is_called(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    store = ProtectedOnly()
    with pytest.raises(error):
        getattr(store, method)(*args, **kwargs)
    assert store.calls == []


def test_protected_methods_get_normalised_values() -> None:
    seen: dict[str, Any] = {}

    class Spy(ProtectedOnly):
        def _commit(
            self,
            session_id: str,
            expected_version: int,
            items: CheckedItems,
            *,
            changes: Doc,
            lease: Lease | None,
        ) -> int:
            seen.update(items=items, changes=changes)
            return super()._commit(
                session_id, expected_version, items, changes=changes, lease=lease
            )

        def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
            seen["ttl"] = ttl
            return super()._claim(session_id, owner, ttl)

    store = Spy()
    created = store.create(Session())
    store.commit(
        created.id, 1, append=(item for item in [{"n": 1}]), changes={"status": "finished"}
    )
    assert isinstance(seen["items"], list)
    assert seen["items"] == [{"n": 1}]
    assert seen["changes"] == {"status": "finished"}
    store.claim(created.id, "runner", timedelta(seconds=2))
    assert seen["ttl"] == 2_000_000


async def test_async_protected_only_store_is_checked_once() -> None:
    calls: list[str] = []

    class AsyncProtectedOnly(AsyncStore):
        def __init__(self) -> None:
            self.inner = MemoryStore()

        async def _create(self, session: Session) -> Session:
            return self.inner._create(session)

        async def _load(
            self, session_id: str, *, last: int | None, after: int | None, limit: int | None
        ) -> Session:
            calls.append("load")
            return self.inner._load(session_id, last=last, after=after, limit=limit)

        async def _commit(
            self,
            session_id: str,
            expected_version: int,
            items: CheckedItems,
            *,
            changes: Doc,
            lease: Lease | None,
        ) -> int:
            calls.append("commit")
            return self.inner._commit(
                session_id, expected_version, items, changes=changes, lease=lease
            )

        async def _replace_history(
            self,
            session_id: str,
            expected_version: int,
            items: CheckedItems,
            *,
            changes: Doc,
            lease: Lease | None,
        ) -> int:
            raise AssertionError("not called here")

        async def _delete(
            self,
            session_id: str,
            expected_version: int | None,
            *,
            lease: Lease | None,
            force: bool,
        ) -> bool:
            return self.inner._delete(session_id, expected_version, lease=lease, force=force)

        async def _exists(self, session_id: str) -> bool:
            return self.inner._exists(session_id)

        async def _claim(self, session_id: str, owner: str, ttl: int) -> Lease:
            return self.inner._claim(session_id, owner, ttl)

        async def _renew(self, lease: Lease, ttl: int) -> Lease:
            return self.inner._renew(lease, ttl)

        async def _release(self, lease: Lease) -> None:
            self.inner._release(lease)

    store = AsyncProtectedOnly()
    created = await store.create(Session())
    with pytest.raises(InvalidRequest):
        await store.commit(created.id, 1, changes={"nope": 1})
    with pytest.raises(InvalidSessionId):
        await store.load("bad id!")
    assert calls == []
    # the default _append: a read of the version, then a commit
    assert await store.append(created.id, [{"n": 1}]) == 2
    assert calls == ["load", "commit"]
    assert [item["n"] for item in (await store.load(created.id)).history] == [1]


# --- optional abilities ---------------------------------------------------------------------


def test_abilities_are_checked_with_isinstance(tmp_path: Any) -> None:
    from tether.stores.abilities import ForksInStore, Purges, Restores
    from tether.stores.file import FileStore

    memory = MemoryStore()
    assert isinstance(memory, ForksInStore)
    assert isinstance(memory, Restores)
    assert isinstance(memory, Purges)
    with FileStore(tmp_path / "files") as files:
        assert not isinstance(files, ForksInStore)  # the file store copies a fork's items
        assert isinstance(files, Restores)
    assert not isinstance(PublicOnly(), Restores)


async def test_the_async_adapter_has_only_its_sync_stores_abilities(tmp_path: Any) -> None:
    from tether.stores.abilities import AsyncForksInStore, AsyncPurges, AsyncRestores
    from tether.stores.base import SyncBackedAsyncStore
    from tether.stores.file import AsyncFileStore
    from tether.stores.memory import AsyncMemoryStore

    memory = AsyncMemoryStore()
    assert isinstance(memory, AsyncForksInStore)
    created = await memory.create(Session(history=[{"n": 1}, {"n": 2}]))
    child = await memory.fork_session(Session(id="child", parent_id=created.id), 1)
    assert child.history_len == 1
    async with AsyncFileStore(tmp_path / "files") as files:
        assert not isinstance(files, AsyncForksInStore)
        assert isinstance(files, AsyncRestores)
        assert isinstance(files, AsyncPurges)
        assert await files.purge_expired() == 0
    bare = SyncBackedAsyncStore(PublicOnly())
    assert not isinstance(bare, AsyncRestores)
    assert not isinstance(bare, AsyncPurges)


def test_a_missing_ability_names_the_store_the_ability_and_the_way_out() -> None:
    from tether.errors import MissingAbility
    from tether.stores.abilities import AsyncRestores, Purges, missing

    error = missing(PublicOnly(), AsyncRestores)
    assert isinstance(error, MissingAbility)
    assert isinstance(error, NotImplementedError)  # what callers caught before it had a name
    assert isinstance(error, InvalidRequest)
    assert (error.store, error.ability, error.method) == ("PublicOnly", "Restores", "restore")
    assert str(error).startswith("PublicOnly has no restore() (the optional ability Restores)")
    assert "docs/stores.md" in str(error)
    assert "purge_expired()" in str(missing(PublicOnly(), Purges))


class _Purging(ProtectedOnly):
    """ProtectedOnly with one optional ability: purge_expired."""

    def purge_expired(self) -> int:
        return self.inner.purge_expired()


@pytest.mark.parametrize(
    ("suite", "helper", "ability"),
    [
        (ForkConformance, "_fork", "ForksInStore (no fork_session()"),
        (RestoreConformance, "_restore_or_skip", "Restores (no restore()"),
        (PurgeConformance, "_purge", "Purges (no purge_expired()"),
    ],
)
def test_an_ability_class_skips_saying_which_ability_the_store_lacks(
    suite: type, helper: str, ability: str
) -> None:
    with ProtectedOnly() as store, pytest.raises(pytest.skip.Exception) as skipped:
        getattr(suite(), helper)(store)
    assert str(skipped.value.msg) == (
        f"ProtectedOnly does not offer {ability}, an optional ability): its clauses do not apply"
    )


def test_an_ability_class_runs_on_a_store_that_offers_it() -> None:
    with _Purging() as store:
        purge = PurgeConformance()._purge(store)
        assert purge() == 0  # the store's own method, called through the suite
        with pytest.raises(pytest.skip.Exception):
            RestoreConformance()._restore_or_skip(store)  # abilities are told apart


class TestOneAbilityConforms(CoreConformance, PurgeConformance):
    """A store of one's own runs the core contract and the class of the ability it offers."""

    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[Store]:
        with _Purging(clock) as store:
            yield store
