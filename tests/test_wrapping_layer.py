"""Wrapping stores hook the contract's protected layer: the public signatures are the
contract's alone, the arguments are checked once (by the outermost store), and the inner store
gets the checked values, through its protected methods, or through its own public methods in
public form where it overrides them (a store written before the protected methods, a wrapper
that changes whole calls)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import tether
from tether import Lease, Session, SessionStatus, _core
from tether.encryption import AsyncEncryptedStore, EncryptedStore, Keyring
from tether.stores import AsyncWrappingStore, SyncBackedAsyncStore, WrappingStore
from tether.stores._writes import Added, Write
from tether.stores.base import PROTECTED_METHODS, AsyncStore, Store
from tether.stores.memory import MemoryStore
from tether.worker_store import FencedStore

RING = Keyring({"k1": Keyring.new_key()}, current="k1")
LATER = datetime(2100, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))


@pytest.mark.parametrize(
    ("wrapper", "contract"),
    [
        (WrappingStore, Store),
        (AsyncWrappingStore, AsyncStore),
        (SyncBackedAsyncStore, AsyncStore),
        (EncryptedStore, Store),
        (AsyncEncryptedStore, AsyncStore),
        (FencedStore, Store),
    ],
)
def test_a_wrapper_restates_no_public_signature(wrapper: type, contract: type) -> None:
    """Every public method but ``list`` (which passes its filters on as given) and ``close``
    is the contract's own: the wrappers change the protected layer only."""
    for public in [*PROTECTED_METHODS, "commit_stamped"]:
        if public != "list":
            assert getattr(wrapper, public) is getattr(contract, public), public


class _Recording(MemoryStore):
    """A store of the contract recording the writes its protected layer receives."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []

    def _add(self, write: Write) -> Any:
        self.writes.append(write)
        return super()._add(write)


@pytest.mark.parametrize("wrap", [WrappingStore, lambda inner: WrappingStore(WrappingStore(inner))])
def test_the_arguments_are_checked_once_and_passed_on_checked(
    wrap: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = _Recording()
    store = wrap(inner)
    store.create(Session(id="s"))
    normalized = _core.normalize_changes
    calls: list[object] = []

    def counted(changes: Any, **kwargs: Any) -> Any:
        calls.append(changes)
        return normalized(changes, **kwargs)

    monkeypatch.setattr(_core, "normalize_changes", counted)
    items = ({"content": str(n)} for n in range(2))  # a generator: drained once, up front
    version = store.commit(
        "s", 1, append=items, changes={"status": SessionStatus.RUNNING, "expires_at": LATER}
    )
    assert version == 2
    assert len(calls) == 1  # checked by the outermost store's public method alone
    (write,) = inner.writes
    assert write.items == [{"content": "0"}, {"content": "1"}]
    assert write.changes == {"status": "running", "expires_at": tether._time.to_micros(LATER)}
    assert store.load("s").expires_at == LATER


class _Old(Store):
    """A store written before the protected methods, and before ``limit=``, ``lease=`` and
    ``changes=`` of ``replace_history``: it overrides the public methods, with the arguments
    it knew, and records what it is given."""

    def __init__(self) -> None:
        self.memory = MemoryStore()
        self.given: list[tuple[str, Any]] = []

    def create(self, session: Session) -> Session:
        return self.memory.create(session)

    def load(self, session_id: str, *, last: int | None = None, after: int | None = None) -> Any:  # type: ignore[override]
        return self.memory.load(session_id, last=last, after=after)

    def commit(  # type: ignore[override]
        self, session_id: str, expected_version: int, *, append: Any = (), changes: Any = None
    ) -> int:
        self.given.append(("commit", changes))
        return self.memory.commit(session_id, expected_version, append=append, changes=changes)

    def replace_history(self, session_id: str, expected_version: int, items: Any) -> int:  # type: ignore[override]
        return self.memory.replace_history(session_id, expected_version, items)

    def delete(self, session_id: str, expected_version: int | None = None) -> bool:  # type: ignore[override]
        return self.memory.delete(session_id, expected_version)

    def exists(self, session_id: str) -> bool:
        return self.memory.exists(session_id)

    def claim(self, session_id: str, owner: str, ttl: Any) -> Lease:
        self.given.append(("claim", ttl))
        return self.memory.claim(session_id, owner, ttl)

    def renew(self, lease: Lease, ttl: Any) -> Lease:
        self.given.append(("renew", ttl))
        return self.memory.renew(lease, ttl)

    def release(self, lease: Lease) -> None:
        self.memory.release(lease)


def _exercise_old(store: Any, old: _Old) -> None:
    """What the sync and async checks share, on the values ``old`` recorded."""
    assert old.given[0] == ("commit", {"expires_at": LATER})  # the same instant, a datetime
    assert old.given[1] == ("commit", None)  # no changes: left out as the old store knew it
    assert old.given[2] == ("claim", timedelta(seconds=1.5))
    assert old.given[3] == ("renew", timedelta(seconds=2))


def test_a_store_written_before_the_protected_methods_gets_public_calls() -> None:
    old = _Old()
    store = WrappingStore(old)
    store.create(Session(id="s"))
    assert store.commit("s", 1, changes={"expires_at": LATER}) == 2
    assert store.commit("s", 2, append=[{"content": "a"}]) == 3
    assert [i["content"] for i in store.load("s").history] == ["a"]
    assert store.replace_history("s", 3, [{"content": "b"}]) == 4
    lease = store.claim("s", "me", 1.5)
    store.renew(lease, 2)
    store.release(lease)
    assert store.delete("s") is True
    _exercise_old(store, old)


async def test_its_async_adapter_gets_public_calls_too() -> None:
    old = _Old()
    store = SyncBackedAsyncStore(old)
    await store.create(Session(id="s"))
    assert await store.commit("s", 1, changes={"expires_at": LATER}) == 2
    assert await store.commit("s", 2, append=[{"content": "a"}]) == 3
    assert [i["content"] for i in (await store.load("s", after=0)).history] == ["a"]
    lease = await store.claim("s", "me", timedelta(seconds=1.5))
    await store.renew(lease, 2.0)
    await store.release(lease)
    _exercise_old(store, old)


class _Counting(WrappingStore):
    """A wrapper written the old way: it overrides the public ``commit`` whole."""

    commits = 0

    def commit(self, session_id: str, expected_version: int, **kwargs: Any) -> int:
        self.commits += 1
        return super().commit(session_id, expected_version, **kwargs)


def test_a_wrapper_of_a_wrapper_keeps_what_the_middle_one_adds() -> None:
    beneath = MemoryStore()
    counting = _Counting(beneath)
    outer = EncryptedStore(counting, RING)
    outer.create(Session(id="s"))
    outer.commit("s", 1, append=[{"content": "secret"}])
    stamp = outer.commit_stamped("s", 2, append=[{"content": "more"}])
    assert (stamp.version, stamp.reported) == (3, False)  # the encrypted store's own commit
    assert counting.commits == 2  # reached through its public commit, each time
    assert all("tether_enc" in item for item in beneath.load("s").history)  # sealed below it
    # and around the encrypted store: its loads opened, its commits sealed, its stamp its own
    around = WrappingStore(outer)
    stamp = around.commit_stamped("s", 3, append=[{"content": "last"}])
    assert (stamp.version, stamp.reported) == (4, False)
    assert [i["content"] for i in around.load("s").history] == ["secret", "more", "last"]
    assert "tether_enc" in beneath.load("s").history[-1]


def test_the_fenced_store_stamps_every_write_and_reports_its_own_commit() -> None:
    store = FencedStore(MemoryStore(), renew=False)
    store.create(Session(id="s"))
    lease = store.claim("s", "worker", 60)
    stamp = store.commit_stamped("s", 1, append=[{"content": "a"}], lease=lease)
    assert (stamp.version, stamp.reported) == (2, False)  # its own commit ran
    store.append("s", [{"content": "b"}], lease=lease)
    store.replace_tail("s", 3, 2, [{"content": "c"}], lease=lease)
    items = store.load("s").history
    assert [(i["content"], i["fence"]) for i in items] == [("a", 1), ("b", 1), ("c", 1)]
    store.release(lease)
    store.close()


def test_a_wrapper_changing_commits_gets_its_own_stamped_commit() -> None:
    """A wrapper overriding ``_add`` (the wrapping store's commit) is never bypassed by
    ``commit_stamped``: its commit runs and reports the version alone."""

    class Adding(WrappingStore):
        def __init__(self, inner: tether.Store) -> None:
            super().__init__(inner)
            self.added: list[Write] = []

        def _add(self, write: Write) -> Added:
            self.added.append(write)
            return super()._add(write)

    store = Adding(MemoryStore())
    store.create(Session(id="s"))
    stamp = store.commit_stamped("s", 1, append=[{"content": "a"}])
    assert (stamp.version, stamp.reported, len(store.added)) == (2, False, 1)


class _OwnCommit(MemoryStore):
    """An adding store whose ``_commit`` is its own: a wrapper may not go around it."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    def _commit(self, *args: Any, **kwargs: Any) -> int:
        self.commits += 1
        version: int = super()._commit(*args, **kwargs)
        return version


@pytest.mark.parametrize("wrap", [WrappingStore, lambda inner: EncryptedStore(inner, RING)])
def test_a_commit_goes_straight_to_add_only_where_commit_would_call_just_that(
    wrap: Any,
) -> None:
    """A wrapper's turn commit skips the inner store's ``_commit`` when that only makes the
    write and calls ``_add``; not when the class has its own ``_commit``, nor when the object
    has its own ``commit`` (a spy), which are called as before."""
    recording = _Recording()
    store = wrap(recording)
    store.create(Session(id="s"))
    assert store.load("s").version == 1  # the encrypted store has seen version 1
    assert store.commit("s", 1, append=[{"content": "a"}]) == 2
    assert [w.expected_version for w in recording.writes] == [1]  # reached its _add
    spied: list[int] = []
    public = recording.commit

    def spy(session_id: str, expected_version: int, **kwargs: Any) -> int:
        spied.append(expected_version)
        return public(session_id, expected_version, **kwargs)

    recording.commit = spy  # type: ignore[method-assign]
    assert store.commit("s", 2, append=[{"content": "b"}]) == 3
    assert spied == [2]
    own = _OwnCommit()
    store = wrap(own)
    store.create(Session(id="s"))
    store.load("s")
    assert store.commit("s", 1, append=[{"content": "a"}]) == 2
    assert own.commits == 1
    assert [i["content"] for i in store.load("s").history] == ["a"]


def test_an_encrypted_store_hooking_every_write_passes_each_commit_through_it_once() -> None:
    """A subclass that changes the items of every write (``_write_items``) has each turn's
    commit go through that hook exactly once, before the items are sealed."""

    class Stamping(EncryptedStore):
        calls = 0

        def _write_items(self, items: Any, lease: Lease | None) -> Any:
            self.calls += 1
            return [{**item, "stamped": True} for item in items]

    beneath = MemoryStore()
    store = Stamping(beneath, RING)
    store.create(Session(id="s"))
    version = store.load("s").version
    store.commit("s", version, append=[{"content": "a"}])
    store.commit_stamped("s", version + 1, append=[{"content": "b"}])
    assert store.calls == 2
    assert [i.get("stamped") for i in store.load("s").history] == [True, True]
    assert all("tether_enc" in item for item in beneath.load("s").history)


@pytest.mark.parametrize("base", [WrappingStore, EncryptedStore])
def test_a_wrapper_changing_how_calls_run_has_every_call_run_so(base: type) -> None:
    """A subclass overriding ``_run`` (how the target's methods are called) sees each call of
    a turn, the commit passed straight to the target's ``_add`` and an encrypted load's
    undecoded read included."""

    class Running(base):  # type: ignore[misc]
        def __init__(self, inner: tether.Store) -> None:
            if base is EncryptedStore:
                super().__init__(inner, RING)
            else:
                super().__init__(inner)
            self.ran: list[str] = []

        def _run(self, method: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.ran.append(method.__name__)
            return method(*args, **kwargs)

    store = Running(_Recording())
    store.create(Session(id="s"))
    store.ran.clear()
    version = store.load("s").version
    store.commit("s", version, append=[{"content": "a"}])
    assert store.ran[-1] == "_add"
    assert store.ran[0] == ("_load_raw" if base is EncryptedStore else "_load")
    assert [i["content"] for i in store.load("s").history] == ["a"]
