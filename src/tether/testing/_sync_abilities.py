# generated from src/tether/testing/_async_abilities.py by tools/unasync.py, do not edit
"""The conformance clauses of the optional abilities (``tether.stores.abilities``), one class
per ability, sync side.

Each class skips its clauses, with the reason, for a store that lacks its ability
(``isinstance`` with the ability's protocol), so a store of your own runs the core contract
and the abilities it offers. :class:`ConformanceBase` holds what every class of the suite
shares: the ``clock`` and ``store_opener`` fixtures and the framework-method check.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from .. import (
    ConflictError,
    DuplicateItemKey,
    InvalidRequest,
    KeyedItem,
    Session,
    SessionExists,
    SessionNotFound,
    Store,
)
from ..stores.abilities import ForksInStore, Purges, Restores
from ..stores.base import PROTECTED_METHODS
from ._clock import FakeClock
from ._suite_data import FRAMEWORK_ITEMS
from ._suite_data import items as _items

__all__ = [
    "ForkConformance",
    "PurgeConformance",
    "RestoreConformance",
    "ConformanceBase",
]


def _ability(store: Store, ability: type, method: str) -> Callable[..., Any]:
    """``store``'s ``method``; the calling clause is skipped if ``store`` does not offer
    ``ability``."""
    if not isinstance(store, ability):
        pytest.skip(
            f"{type(store).__name__} does not offer {ability.__name__.removeprefix('Async')} "
            f"(no {method}(), an optional ability): its clauses do not apply"
        )
    method_: Callable[..., Any] = getattr(store, method)
    return method_


class ConformanceBase:
    """What every conformance class shares: the fixtures a subclass may override and the
    check that skips a framework clause for a store without that method."""

    is_async = False

    @pytest.fixture
    def store_opener(self) -> Callable[[], Any] | None:
        return None

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    def _needs(self, store: Store, *names: str) -> None:
        """Skip the clause unless the store implements these methods (the built-in stores all
        do: tests/test_conformance.py checks that none of them skips)."""
        target: Any = getattr(store, "sync", store)
        # the contract's class (Store or Store), whose defaults a store may not override
        base = next(
            c for c in type(target).__mro__ if c.__module__.startswith("tether.stores.base")
        )
        for name in names:
            if name == "replace_history:changes":
                params = inspect.signature(target.replace_history).parameters
                if "changes" not in params:
                    pytest.skip(f"{type(target).__name__}.replace_history() has no changes=")
                continue
            # its own is the public method overridden, or the protected one implemented
            own = (name, PROTECTED_METHODS.get(name, name))
            if all(getattr(type(target), n) is getattr(base, n, None) for n in own):
                pytest.skip(f"{type(target).__name__} has no {name}() of its own")


class ForkConformance(ConformanceBase):
    """:class:`~tether.stores.abilities.ForksInStore`: ``fork_session(child, at)`` creates
    ``child`` with its parent's items up to seq ``at`` inside the store, without the caller
    copying them; afterwards each side's writes stay invisible to the other."""

    def _fork(self, store: Store) -> Callable[..., Any]:
        return _ability(store, ForksInStore, "fork_session")

    def test_fork_session_keeps_the_parents_items_up_to_at(self, store: Store) -> None:
        fork = self._fork(store)
        parent = store.create(Session(owner="ada", history=_items(5)))
        child = Session(id="child", parent_id=parent.id, owner="ada", state={"k": 1})
        header = fork(child, 3)
        assert (header.id, header.parent_id, header.fork_seq) == ("child", parent.id, 3)
        assert (header.version, header.last_seq, header.history_len) == (1, 3, 3)
        loaded = store.load("child")
        assert loaded.items == parent.items[:3], "the same items, seqs and timestamps"
        assert loaded.state == {"k": 1}
        assert {h.id for h in (store.list(owner="ada")).sessions} == {parent.id, "child"}
        empty = fork(Session(id="empty", parent_id=parent.id), 0)
        assert (empty.fork_seq, (store.load("empty")).history) == (0, [])

    def test_writes_after_a_fork_stay_on_their_side(self, store: Store) -> None:
        fork = self._fork(store)
        parent = store.create(Session(history=_items(4)))
        fork(Session(id="child", parent_id=parent.id), 4)
        store.commit(parent.id, 1, append=_items(2, "parent"))
        store.commit("child", 1, append=_items(1, "child"))
        parent_texts = [i["content"] for i in (store.load(parent.id)).history]
        child_texts = [i["content"] for i in (store.load("child")).history]
        assert parent_texts == ["m0", "m1", "m2", "m3", "parent0", "parent1"]
        assert child_texts == ["m0", "m1", "m2", "m3", "child0"]
        store.replace_history(parent.id, 2, _items(1, "compacted"))
        assert [i["content"] for i in (store.load("child")).history] == child_texts
        assert store.delete(parent.id)
        child = store.load("child")
        assert [i["content"] for i in child.history] == child_texts, "a fork outlives its parent"
        assert [i["seq"] for i in child.history] == [1, 2, 3, 4, 5]

    def test_a_fork_of_a_compacted_parent_numbers_from_1(self, store: Store) -> None:
        fork = self._fork(store)
        parent = store.create(Session(history=_items(3)))
        store.replace_history(parent.id, 1, _items(3, "c"))  # seqs 4..6
        fork(Session(id="child", parent_id=parent.id), 5)
        child = store.load("child")
        assert [(i["seq"], i["content"]) for i in child.history] == [(1, "c0"), (2, "c1")]
        assert store.commit("child", 1, append=_items(1, "next")) == 2
        assert [i["seq"] for i in (store.load("child")).history] == [1, 2, 3]

    def test_a_fork_keeps_the_keys_up_to_at_as_its_own(self, store: Store) -> None:
        self._needs(store, "items_by_key")
        fork = self._fork(store)
        parent = store.create(Session(history=_items(1)))
        store.commit(parent.id, 1, append=[KeyedItem("a", {"n": 1}), KeyedItem("b", {})])
        fork(Session(id="child", parent_id=parent.id), 2)  # item "a" (seq 2) only
        assert set(store.items_by_key("child", ["a", "b"])) == {"a"}
        store.commit("child", 1, append=[KeyedItem("b", {"mine": True})])
        assert (store.items_by_key("child", ["b"]))["b"].item == {"mine": True}
        assert (store.items_by_key(parent.id, ["b"]))["b"].item == {}
        with pytest.raises(DuplicateItemKey):
            store.commit("child", 2, append=[KeyedItem("a", {})])

    def test_fork_session_checks_before_writing(self, store: Store) -> None:
        fork = self._fork(store)
        parent = store.create(Session(history=_items(3)))
        with pytest.raises(InvalidRequest):
            fork(Session(id="orphan"), 1)  # no parent_id
        with pytest.raises(SessionNotFound):
            fork(Session(id="orphan", parent_id="no-such-parent"), 1)
        for at in (-1, 4):
            with pytest.raises(InvalidRequest):
                fork(Session(id="orphan", parent_id=parent.id), at)
        assert not store.exists("orphan")
        taken = store.create(Session(id="taken", history=_items(1)))
        with pytest.raises(SessionExists):
            fork(Session(id="taken", parent_id=parent.id), 2)
        assert store.load("taken") == taken


class PurgeConformance(ConformanceBase):
    """:class:`~tether.stores.abilities.Purges`: ``purge_expired()`` deletes the sessions whose
    ``expires_at`` has passed and returns how many (a newer tether's are never deleted: see the
    core clause on expired newer-schema sessions)."""

    def _purge(self, store: Store) -> Callable[[], Any]:
        return _ability(store, Purges, "purge_expired")

    def test_purge_expired_deletes_the_expired_sessions_only(
        self, store: Store, clock: FakeClock
    ) -> None:
        purge = self._purge(store)
        soon = store.create(
            Session(owner="p", expires_at=clock() + timedelta(seconds=10), history=_items(3))
        )
        later = store.create(Session(owner="p", expires_at=clock() + timedelta(seconds=60)))
        forever = store.create(Session(owner="p"))
        assert purge() == 0
        clock.advance(11)
        assert purge() == 1
        assert not store.exists(soon.id)
        assert {h.id for h in (store.list(owner="p")).sessions} == {later.id, forever.id}
        assert purge() == 0, "a second run finds nothing left"
        clock.advance(60)
        assert purge() == 1
        assert [h.id for h in (store.list(owner="p")).sessions] == [forever.id]

    def test_a_purged_sessions_id_is_free_again(self, store: Store, clock: FakeClock) -> None:
        purge = self._purge(store)
        gone = store.create(
            Session(id="gone", expires_at=clock() + timedelta(seconds=5), history=_items(2))
        )
        clock.advance(6)
        assert purge() == 1
        again = store.create(Session(id=gone.id, history=_items(1, "new")))
        assert again.version == 1
        assert [i["content"] for i in (store.load(gone.id)).history] == ["new0"]


class RestoreConformance(ConformanceBase):
    """:class:`~tether.stores.abilities.Restores`: ``restore(session, *, replace=False,
    expected_version=None)`` writes a session exactly as given (what import, copy, migrate and
    rekey write with)."""

    def _restore_or_skip(self, store: Store) -> Callable[..., Any]:
        return _ability(store, Restores, "restore")

    def test_restore_writes_a_session_exactly(self, store: Store) -> None:
        restore = self._restore_or_skip(store)
        created = store.create(
            Session(owner="ada", metadata={"k": [1, {"x": None}]}, history=_items(3))
        )
        store.commit(created.id, 1, append=_items(2, "b"), changes={"state": {"n": 1}})
        store.replace_history(created.id, 2, _items(2, "c"))  # seqs 6..7
        original = store.load(created.id)
        assert store.delete(created.id)
        restore(original)
        restored = store.load(created.id)
        assert restored == original, "versions, timestamps and seqs are kept"
        assert [h.id for h in (store.list(owner="ada")).sessions] == [created.id]
        assert [h.id for h in (store.list(metadata={"k": [1, {"x": None}]})).sessions] == [
            created.id
        ]
        assert store.commit(created.id, original.version, append=_items(1, "d")) == (
            original.version + 1
        )
        assert [i["seq"] for i in (store.load(created.id)).history] == [6, 7, 8]

    def test_restore_keeps_exact_items_and_keys(self, store: Store) -> None:
        self._needs(store, "items_by_key")
        restore = self._restore_or_skip(store)
        created = store.create(Session(history=FRAMEWORK_ITEMS[:3]))
        store.commit(created.id, 1, append=[KeyedItem("e1", FRAMEWORK_ITEMS[4])])
        original = store.load(created.id)
        assert store.delete(created.id)
        restore(original)
        restored = store.load(created.id)
        assert restored.items == original.items
        assert (store.items_by_key(created.id, ["e1"]))["e1"].item == FRAMEWORK_ITEMS[4]
        with pytest.raises(DuplicateItemKey):
            store.commit(created.id, restored.version, append=[KeyedItem("e1", {})])

    def test_restore_over_an_existing_session_needs_replace(self, store: Store) -> None:
        restore = self._restore_or_skip(store)
        created = store.create(Session(history=_items(4)))
        snapshot = store.load(created.id)
        store.commit(created.id, 1, append=_items(3, "later"))
        with pytest.raises(SessionExists):
            restore(snapshot)
        assert (store.load(created.id)).version == 2
        restore(snapshot, replace=True)
        assert store.load(created.id) == snapshot

    def test_restore_with_an_expected_version_never_loses_a_commit(self, store: Store) -> None:
        """``restore(session, expected_version=N)`` writes only over version N of the stored
        session (``tether migrate`` writes back what it read this way): a commit that landed
        since raises ConflictError and is kept. Seqs are kept as given, never renumbered."""
        restore = self._restore_or_skip(store)
        created = store.create(Session(history=_items(3)))
        store.replace_history(created.id, 1, _items(2, "c"))  # seqs 4..5
        read = store.load(created.id)  # version 2
        store.commit(created.id, 2, append=_items(1, "late"))  # lands after the read
        with pytest.raises(ConflictError) as info:
            restore(read, replace=True, expected_version=read.version)
        assert (info.value.expected_version, info.value.actual_version) == (2, 3)
        assert (store.load(created.id)).history[-1]["content"] == "late0"
        again = store.load(created.id)
        changed = again.model_copy(update={"state": {"migrated": True}})
        restore(changed, replace=True, expected_version=again.version)
        assert store.load(created.id) == changed
        assert [i["seq"] for i in (store.load(created.id)).history] == [4, 5, 6]
        with pytest.raises(SessionNotFound):
            restore(changed.model_copy(update={"id": "gone"}), expected_version=1)
        assert not store.exists("gone")
        for bad in ("3", 1.5, True):
            with pytest.raises(InvalidRequest):
                restore(changed, replace=True, expected_version=bad)

    def test_restore_keeps_the_fence_but_no_live_lease(self, store: Store) -> None:
        restore = self._restore_or_skip(store)
        created = store.create(Session())
        lease = store.claim(created.id, "runner", 300)
        held = store.load(created.id)
        store.release(lease)
        store.delete(created.id)
        restore(held)
        restored = store.load(created.id, last=0)
        assert restored.lease_fence == lease.fence
        assert (store.claim(created.id, "other", 30)).fence == lease.fence + 1

    def test_restore_refuses_bad_sessions_before_writing(self, store: Store) -> None:
        restore = self._restore_or_skip(store)
        created = store.create(Session(id="good", history=_items(3)))
        loaded = store.load(created.id)
        store.delete(created.id)
        gap = loaded.model_copy(update={"history": [loaded.history[0], loaded.history[2]]})
        never_stored = Session(id="good")
        for bad in (gap, never_stored, loaded.model_copy(update={"history": []})):
            with pytest.raises(InvalidRequest):
                restore(bad)
        assert not store.exists("good")
