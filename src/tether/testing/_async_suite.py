"""Store conformance suite, async side; tools/unasync.py writes the sync side from it.

:class:`AsyncCoreConformance` is the contract every store keeps; the optional abilities have a
class each (``_async_abilities.py``); :class:`AsyncStoreConformance` is all of them at once.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from .. import (
    AlreadyClaimed,
    AsyncStore,
    ConflictError,
    DuplicateItemKey,
    InvalidRequest,
    InvalidSessionData,
    InvalidSessionId,
    KeyedItem,
    Lease,
    LeaseLost,
    Session,
    SessionExists,
    SessionHeader,
    SessionNotFound,
    SessionStatus,
    StoredItem,
    UnsupportedSchemaVersion,
    _core,
)
from ..models import HistoryItem
from ..schema import schema
from ..stores.abilities import AsyncPurges, AsyncRestores
from ._async_abilities import (
    AsyncForkConformance,
    AsyncPurgeConformance,
    AsyncRestoreConformance,
    ConformanceBase,
)
from ._clock import FakeClock
from ._suite_data import FRAMEWORK_ITEMS
from ._suite_data import items as _items
from ._workers import (
    append_process,
    append_with_retry_async,
    claim_race_process,
    claim_race_tasks,
    gather_tasks,
    race_process,
    race_tasks,
    run_processes,
)

__all__ = ["AsyncCoreConformance", "AsyncStoreConformance"]

UNICODE = 'héllo wörld ✓ 日本語 עברית 🙂 \u0000 nul and \\ backslash " quote'
NESTED = {"a": [1, 2.5, {"b": None, "c": [True, False]}], "d": {"e": {"f": "g"}}, "n": -(2**63)}


async def _take(pages: AsyncIterator[HistoryItem], count: int | None = None) -> list[HistoryItem]:
    """The next ``count`` items of an ``iter_history`` (fewer if it ends; None: all that are
    left); the iteration stays where it is, to be resumed."""
    taken: list[HistoryItem] = []
    async for item in pages:
        taken.append(item)
        if len(taken) == count:
            break
    return taken


def _past() -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=5)


def _future() -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=1)


class AsyncCoreConformance(ConformanceBase):
    """Every clause of the store contract, for an :class:`~tether.AsyncStore`, without the
    optional abilities (each has a class of its own: :class:`AsyncForkConformance`,
    :class:`AsyncRestoreConformance`, :class:`AsyncPurgeConformance`).

    Subclass it in a test module and provide a ``store`` fixture that yields a fresh, empty
    store built with the suite's ``clock`` fixture (``MyStore(..., clock=clock)``): the lease
    and expiry clauses move that clock instead of sleeping. To run the multi-process clauses
    for real, also provide ``store_opener``: a
    picklable zero-argument callable that opens another handle on the *same* store in another
    process (``functools.partial(tether.open_async_store, url)``); without it those clauses race
    on the one store object instead.
    """

    race_rounds = 20
    writers = 8
    appends_per_writer = 200
    claim_racers = 16
    claim_rounds = 200
    multi_process_clauses = (
        "test_racing_writers_from_one_version_exactly_one_wins",
        "test_concurrent_appends_with_retry_lose_nothing",
        "test_racing_claims_have_exactly_one_winner_per_round",
    )
    """The clauses that start OS processes when ``store_opener`` is given: the slow ones. A
    fast loop can leave them out by name (tether's own tests mark them ``slow``)."""

    # --- create and load -----------------------------------------------------------------------

    async def test_create_stores_version_1_and_numbers_history(self, store: AsyncStore) -> None:
        created = await store.create(Session(agent="support", history=_items(3)))
        assert created.version == 1
        assert [item["seq"] for item in created.history] == [1, 2, 3]
        assert created.last_seq == 3
        assert created.history_len == 3
        assert created.created_at is not None
        assert created.created_at == created.updated_at
        assert created.created_at.tzinfo is not None
        assert all(isinstance(item["timestamp"], str) for item in created.history)
        loaded = await store.load(created.id)
        assert loaded == created

    async def test_every_field_round_trips_exactly(self, store: AsyncStore) -> None:
        big = "x" * (1024 * 1024)
        expires = _future().replace(microsecond=123456)
        session = Session(
            id="round-trip:1.a_b",
            owner="ada@example.com",
            agent="support",
            status=SessionStatus.WAITING,
            metadata={"title": UNICODE, "nested": NESTED},
            state={"counter": 3, "nested": NESTED, "empty": {}, "list": []},
            options={"model": "gpt-x", "system_prompt": UNICODE, "cwd": "/tmp/project"},
            parent_id="parent-1",
            fork_seq=7,
            expires_at=expires,
            history=[
                {"role": "user", "content": UNICODE},
                {"role": "assistant", "content": None, "tool_calls": [NESTED], "extra": 1.5},
                {"role": "tool", "name": "lookup", "tool_call_id": "call_1", "content": big},
                {"role": "user", "content": [{"type": "text", "text": "parts"}]},
            ],
        )
        created = await store.create(session)
        loaded = await store.load(session.id)
        for name in (
            "owner", "agent", "status", "metadata", "state", "options",
            "parent_id", "fork_seq", "expires_at",
        ):  # fmt: skip
            assert getattr(loaded, name) == getattr(session, name), name
        assert loaded.expires_at == expires
        assert loaded.created_at == created.created_at
        assert loaded.updated_at == created.updated_at
        for given, got in zip(session.history, loaded.history, strict=True):
            assert {k: v for k, v in got.items() if k not in ("seq", "timestamp")} == given
        assert loaded.history[2]["content"] == big
        assert loaded == created

    async def test_empty_history_round_trips(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        loaded = await store.load(created.id)
        assert loaded.history == []
        assert (loaded.last_seq, loaded.history_len, loaded.first_seq) == (0, 0, 1)
        assert loaded.status == SessionStatus.NEW

    async def test_generated_ids_are_time_ordered(self, store: AsyncStore) -> None:
        ids = [(await store.create(Session())).id for _ in range(5)]
        assert ids == sorted(ids)
        assert len(set(ids)) == 5

    async def test_given_timestamps_are_kept(self, store: AsyncStore) -> None:
        stamp = "2020-01-02T03:04:05.678901+00:00"
        created = await store.create(Session(history=[{"role": "user", "timestamp": stamp}]))
        assert (await store.load(created.id)).history[0]["timestamp"] == stamp

    async def test_store_holds_copies_not_caller_objects(self, store: AsyncStore) -> None:
        history: list[dict[str, Any]] = [{"role": "user", "content": {"text": "original"}}]
        session = Session(state={"k": ["v"]}, history=history)
        created = await store.create(session)
        history[0]["content"]["text"] = "changed by caller"
        session.state["k"].append("changed")
        created.state["k"].append("changed too")
        created.history[0]["content"]["text"] = "changed through the result"
        loaded = await store.load(session.id)
        assert loaded.state == {"k": ["v"]}
        assert loaded.history[0]["content"] == {"text": "original"}
        loaded.metadata["x"] = 1
        loaded.history.append({"role": "user"})
        again = await store.load(session.id)
        assert again.metadata == {}
        assert len(again.history) == 1

    async def test_load_missing_raises_not_found(self, store: AsyncStore) -> None:
        with pytest.raises(SessionNotFound) as info:
            await store.load("no-such-session")
        assert info.value.session_id == "no-such-session"
        assert not await store.exists("no-such-session")

    # --- conflicts -----------------------------------------------------------------------------

    async def test_create_twice_conflicts(self, store: AsyncStore) -> None:
        await store.create(Session(id="dup", history=_items(1)))
        with pytest.raises(SessionExists) as info:
            await store.create(Session(id="dup", state={"overwrite": True}))
        assert isinstance(info.value, ConflictError)
        assert info.value.session_id == "dup"
        assert info.value.actual_version == 1
        loaded = await store.load("dup")
        assert loaded.state == {}
        assert len(loaded.history) == 1

    async def test_stale_commit_conflicts_and_writes_nothing(self, store: AsyncStore) -> None:
        created = await store.create(Session(state={"n": 0}))
        assert await store.commit(created.id, 1, append=_items(2), changes={"state": {"n": 1}}) == 2
        before = await store.load(created.id)
        with pytest.raises(ConflictError) as info:
            await store.commit(
                created.id, 1, append=_items(5, "stale"), changes={"state": {"n": 9}}
            )
        err = info.value
        assert (err.session_id, err.expected_version, err.actual_version) == (created.id, 1, 2)
        assert "version" in str(err)
        assert await store.load(created.id) == before

    async def test_commit_applies_header_changes(self, store: AsyncStore) -> None:
        created = await store.create(Session(owner="a", agent="x"))
        expires = _future()
        changes: dict[str, Any] = {
            "state": {"step": 2},
            "metadata": {"title": "t"},
            "options": {"model": "m"},
            "status": "finished",
            "owner": "b",
            "agent": "y",
            "expires_at": expires,
        }
        version = await store.commit(created.id, created.version, changes=changes)
        loaded = await store.load(created.id)
        assert version == loaded.version == 2
        assert loaded.state == {"step": 2}
        assert loaded.metadata == {"title": "t"}
        assert loaded.options == {"model": "m"}
        assert loaded.status == SessionStatus.FINISHED
        assert (loaded.owner, loaded.agent, loaded.expires_at) == ("b", "y", expires)
        assert loaded.updated_at is not None
        assert created.updated_at is not None
        assert loaded.updated_at >= created.updated_at
        assert loaded.created_at == created.created_at

    async def test_commit_appends_after_existing_items(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(2)))
        await store.commit(created.id, 1, append=_items(3, "b"))
        await store.commit(created.id, 2)  # a commit with nothing to add still counts
        loaded = await store.load(created.id)
        assert loaded.version == 3
        assert [i["seq"] for i in loaded.history] == [1, 2, 3, 4, 5]
        assert [i["content"] for i in loaded.history] == ["m0", "m1", "b0", "b1", "b2"]

    async def test_commit_to_missing_session_raises_not_found(self, store: AsyncStore) -> None:
        with pytest.raises(SessionNotFound):
            await store.commit("missing", 1, append=_items(1))

    async def test_bad_changes_raise_before_writing(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        bad_changes: list[dict[str, Any]] = [
            {"version": 5},
            {"history": []},
            {"status": "sleeping"},
            {"state": ["not", "an", "object"]},
            {"expires_at": "tomorrow"},
            {"expires_at": datetime(2030, 1, 1)},  # naive
        ]
        for changes in bad_changes:
            with pytest.raises(InvalidRequest):
                await store.commit(created.id, 1, append=_items(1), changes=changes)
        assert await store.load(created.id) == created

    # --- the runtime's block: state["_tether"] ------------------------------------------------

    async def test_replacing_state_keeps_the_runtime_block_exactly(self, store: AsyncStore) -> None:
        """An application's new state keeps the stored ``state["_tether"]`` as it was (only
        the runtime's own writes set it), whatever the block and the states around it hold:
        braces and quotes in strings, ``"_tether"`` as a nested key or inside a string, 64-bit
        ints, empty objects and arrays."""
        block = {
            "reviews": [{"id": "rv_1", "note": 'a "quoted" } ] { [ \\ brace', "args": {}}],
            "empty": {},
            "list": [[], [{}]],
            "big": 2**63 - 1,
            "small": -(2**63),
            "float": 2.5,
            "none": None,
            "text": 'héllo ✓ 🙂 \\ backslash " quote \n',
            "nested": {"_tether": {"x": [{}]}},
            "tricky": '","_tether":1}',
        }
        created = await store.create(Session(state={"app": 1}))
        with _core.runtime_writes():  # the runtime's path: the block is written as given
            stored = {"before": '"_tether":', "_tether": block, "after": [1, {"k": "}"}]}
            version = await store.commit(created.id, 1, changes={"state": stored})
        assert (await store.load(created.id, last=0)).state == stored
        for state in (
            {"new": 'x"_tether":{}', "nested": {"_tether": 5}, "n": 2**63 - 1},
            {},
            {"text": UNICODE, "e": {}, "a": []},
        ):
            version = await store.commit(created.id, version, changes={"state": state})
            assert (await store.load(created.id, last=0)).state == {**state, "_tether": block}
        version = await store.commit(created.id, version, changes={"metadata": {"m": 1}})
        assert (await store.load(created.id, last=0)).state["_tether"] == block
        with _core.runtime_writes():  # the runtime may drop its block
            version = await store.commit(created.id, version, changes={"state": {"k": 1}})
        version = await store.commit(created.id, version, changes={"state": {"k": 2}})
        assert (await store.load(created.id, last=0)).state == {"k": 2}
        with _core.runtime_writes():  # a NUL in the stored state: kept all the same
            stored = {"_tether": {"text": UNICODE}, "app": UNICODE}
            version = await store.commit(created.id, version, changes={"state": stored})
        await store.commit(created.id, version, changes={"state": {"app": 2}})
        assert (await store.load(created.id, last=0)).state == {
            "app": 2,
            "_tether": stored["_tether"],
        }

    # --- windows -------------------------------------------------------------------------------

    async def test_load_windows(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(10)))

        async def seqs(**window: int) -> list[int]:
            loaded = await store.load(created.id, **window)
            assert (loaded.last_seq, loaded.history_len) == (10, 10)
            return [item["seq"] for item in loaded.history]

        assert await seqs() == list(range(1, 11))
        assert await seqs(last=3) == [8, 9, 10]
        assert await seqs(last=0) == []
        assert await seqs(last=50) == list(range(1, 11))
        assert await seqs(after=7) == [8, 9, 10]
        assert await seqs(after=0) == list(range(1, 11))
        assert await seqs(after=10) == []
        assert await seqs(after=99) == []
        assert await seqs(after=2, last=3) == [8, 9, 10]
        assert await seqs(after=8, last=5) == [9, 10]
        for bad in ({"last": -1}, {"after": -1}, {"last": "3"}):
            with pytest.raises(InvalidRequest):
                await store.load(created.id, **bad)

    async def test_after_window_follows_new_commits(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(4)))
        held = created.last_seq
        await store.commit(created.id, 1, append=_items(2, "new"))
        fresh = await store.load(created.id, after=held)
        assert [i["content"] for i in fresh.history] == ["new0", "new1"]

    # --- pages: load(limit=) and iter_history -------------------------------------------------

    async def test_load_limit_returns_the_oldest_items_of_the_window(
        self, store: AsyncStore
    ) -> None:
        created = await store.create(Session(history=_items(40)))
        await store.commit(created.id, 1, changes={"state": {"k": 1}})
        whole = await store.load(created.id)

        async def seqs(**window: int) -> list[int]:
            loaded = await store.load(created.id, **window)
            # a page never changes what the header says about the whole history
            assert loaded.header == whole.header
            if loaded.history:
                start = loaded.history[0]["seq"] - 1
                assert loaded.history == whole.history[start : start + len(loaded.history)]
            return [item["seq"] for item in loaded.history]

        assert await seqs(limit=3) == [1, 2, 3]
        assert await seqs(limit=1) == [1]
        assert await seqs(limit=35) == list(range(1, 36))
        assert await seqs(limit=40) == list(range(1, 41))
        assert await seqs(limit=1000) == list(range(1, 41))  # past the end
        assert await seqs(after=4, limit=3) == [5, 6, 7]
        assert await seqs(after=38, limit=5) == [39, 40]
        assert await seqs(after=40, limit=1) == []
        assert await seqs(after=99, limit=1) == []
        assert await seqs(last=5, limit=2) == [36, 37]
        assert await seqs(last=3, limit=10) == [38, 39, 40]
        assert await seqs(last=36, limit=33) == list(range(5, 38))
        assert await seqs(last=36, limit=36) == list(range(5, 41))
        assert await seqs(last=50, limit=34) == list(range(1, 35))
        assert await seqs(last=0, limit=5) == []
        assert await seqs(after=2, last=5, limit=2) == [36, 37]
        assert await seqs(after=30, last=20, limit=4) == [31, 32, 33, 34]

    async def test_load_limit_pages_a_compacted_history(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(5)))
        await store.replace_history(created.id, 1, _items(6, "new"))
        page = await store.load(created.id, limit=2)
        assert [(i["seq"], i["content"]) for i in page.history] == [(6, "new0"), (7, "new1")]
        assert (page.first_seq, page.last_seq, page.history_len) == (6, 11, 6)
        assert [i["seq"] for i in (await store.load(created.id, after=2, limit=2)).history] == [
            6,
            7,
        ]
        assert [i["seq"] for i in (await store.load(created.id, after=9, limit=9)).history] == [
            10,
            11,
        ]

    async def test_invalid_limits_raise_before_any_read(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(3)))
        bad_limits: list[Any] = [0, -1, -100, True, False, 1.5, "3", [1]]
        for bad in bad_limits:
            with pytest.raises(InvalidRequest):
                await store.load(created.id, limit=bad)
            # checked before any I/O: a missing session is not even looked up
            with pytest.raises(InvalidRequest):
                await store.load("no-such-session", limit=bad)
            with pytest.raises(InvalidRequest):
                store.iter_history("no-such-session", page_size=bad)
        for bad_after in (-1, "2", 1.0):
            with pytest.raises(InvalidRequest):
                store.iter_history(created.id, after=bad_after)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest):
            store.iter_history(created.id, page_size=None)  # type: ignore[arg-type]
        assert len((await store.load(created.id, limit=None)).history) == 3

    async def test_iter_history_over_several_pages_equals_load(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(10)))
        version = await store.commit(created.id, 1, append=_items(8, "b"))
        await store.commit(created.id, version, append=_items(7, "c"))
        whole = (await store.load(created.id)).history
        assert len(whole) == 25
        for page_size in (1, 4, 5, 24, 25, 26, 1000):
            items = await _take(store.iter_history(created.id, page_size=page_size))
            assert items == whole
        assert await _take(store.iter_history(created.id)) == whole
        empty = await store.create(Session())
        assert await _take(store.iter_history(empty.id, page_size=2)) == []

    async def test_iter_history_after(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(25)))
        whole = (await store.load(created.id)).history

        async def seqs(after: int, page_size: int) -> list[int]:
            pages = store.iter_history(created.id, after=after, page_size=page_size)
            return [item["seq"] async for item in pages]

        assert await seqs(10, 4) == list(range(11, 26))
        assert await seqs(0, 7) == list(range(1, 26))
        assert await seqs(24, 3) == [25]
        assert await seqs(25, 3) == []
        assert await seqs(99, 3) == []
        pages = store.iter_history(created.id, after=20, page_size=2)
        assert await _take(pages) == whole[20:]

    async def test_iter_history_of_a_missing_session_raises_not_found(
        self, store: AsyncStore
    ) -> None:
        pages = store.iter_history("no-such-session", page_size=3)
        with pytest.raises(SessionNotFound):
            await _take(pages, 1)
        created = await store.create(Session(history=_items(10)))
        pages = store.iter_history(created.id, page_size=3)
        assert [i["seq"] for i in await _take(pages, 3)] == [1, 2, 3]
        await store.delete(created.id)
        with pytest.raises(SessionNotFound):
            await _take(pages, 1)

    async def test_iter_history_raises_conflict_when_replaced_between_pages(
        self, store: AsyncStore
    ) -> None:
        created = await store.create(Session(history=_items(10)))
        pages = store.iter_history(created.id, page_size=3)
        assert [i["seq"] for i in await _take(pages, 3)] == [1, 2, 3]
        await store.replace_history(created.id, 1, _items(2, "summary"))
        with pytest.raises(ConflictError, match="replaced during iteration") as caught:
            await _take(pages, 1)
        assert "again" in str(caught.value)
        assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
        # starting again reads the new history
        pages = store.iter_history(created.id, page_size=3)
        assert [i["content"] async for i in pages] == ["summary0", "summary1"]

        # replaced and appended to: still a conflict, however far the seqs moved
        other = await store.create(Session(history=_items(6)))
        pages = store.iter_history(other.id, page_size=2)
        assert [i["seq"] for i in await _take(pages, 2)] == [1, 2]
        version = await store.commit(other.id, 1, append=_items(3, "more"))
        await store.replace_history(other.id, version, _items(9, "new"))
        with pytest.raises(ConflictError):
            await _take(pages, 1)

    async def test_iter_history_raises_conflict_when_recreated_between_pages(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session(id="again", history=_items(6)))
        pages = store.iter_history(created.id, page_size=2)
        assert [i["seq"] for i in await _take(pages, 2)] == [1, 2]
        await store.delete(created.id)
        clock.advance(1)
        await store.create(Session(id="again", history=_items(6, "other")))
        with pytest.raises(ConflictError):
            await _take(pages, 1)

    async def test_iter_history_reads_items_appended_between_pages(self, store: AsyncStore) -> None:
        # Appends are not a conflict: the iteration goes on to the last_seq the last page saw.
        created = await store.create(Session(history=_items(6)))
        pages = store.iter_history(created.id, page_size=4)
        assert [i["seq"] for i in await _take(pages, 4)] == [1, 2, 3, 4]
        version = await store.commit(created.id, 1, append=_items(3, "new"))
        assert [i["seq"] for i in await _take(pages, 2)] == [5, 6]
        await store.commit(created.id, version, append=_items(2, "newer"))
        rest = [i["content"] async for i in pages]
        assert rest == ["new0", "new1", "new2", "newer0", "newer1"]
        # an iteration that already ended stays ended
        assert await _take(pages, 1) == []

    # --- replace_history -----------------------------------------------------------------------

    async def test_replace_history_compare_and_replace(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(6)))
        version = await store.replace_history(created.id, 1, [{"role": "system", "content": "sum"}])
        assert version == 2
        loaded = await store.load(created.id)
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(7, "sum")]
        assert (loaded.first_seq, loaded.last_seq, loaded.history_len) == (7, 7, 1)
        with pytest.raises(ConflictError):
            await store.replace_history(created.id, 1, [])
        await store.commit(created.id, 2, append=_items(1, "after"))
        loaded = await store.load(created.id)
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(7, "sum"), (8, "after0")]
        assert [i["seq"] for i in (await store.load(created.id, last=1)).history] == [8]
        await store.replace_history(created.id, 3, [])
        emptied = await store.load(created.id)
        assert (emptied.history, emptied.history_len, emptied.last_seq) == ([], 0, 8)

    async def test_replace_history_changes_the_header_in_the_same_write(
        self, store: AsyncStore
    ) -> None:
        self._needs(store, "replace_history:changes")
        created = await store.create(Session(history=_items(3), state={"n": 1}))
        version = await store.replace_history(
            created.id, 1, [{"role": "system", "content": "sum"}], changes={"state": {"n": 2}}
        )
        assert version == 2
        loaded = await store.load(created.id)
        assert loaded.state == {"n": 2}
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(4, "sum")]
        with pytest.raises(InvalidRequest):
            await store.replace_history(created.id, 2, [], changes={"version": 9})
        with pytest.raises(ConflictError):
            await store.replace_history(created.id, 1, [], changes={"state": {}})
        assert await store.load(created.id) == loaded

    # --- items as given --------------------------------------------------------------------------

    async def test_items_are_stored_exactly_as_given(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=FRAMEWORK_ITEMS[:2]))
        assert [entry.item for entry in created.items] == FRAMEWORK_ITEMS[:2]
        await store.commit(created.id, 1, append=FRAMEWORK_ITEMS[2:])
        loaded = await store.load(created.id)
        assert [entry.item for entry in loaded.items] == FRAMEWORK_ITEMS
        assert [entry.seq for entry in loaded.items] == list(range(1, 7))
        assert all(isinstance(entry, StoredItem) for entry in loaded.items)
        assert all(entry.key is None for entry in loaded.items)
        # tether's fields beside each item, never inside it; history is the merged view
        stamp = loaded.items[2].timestamp  # the commit's time
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)
        assert loaded.history[2] == {**FRAMEWORK_ITEMS[2], "seq": 3, "timestamp": stamp}
        assert loaded.items[4].item["timestamp"] == 1712345678.25
        assert loaded.items[4].timestamp == stamp  # not a str: the item's own, not tether's
        # every window gives the same exact items
        window = await store.load(created.id, after=2, limit=2)
        assert [entry.item for entry in window.items] == FRAMEWORK_ITEMS[2:4]
        assert [entry.item for entry in (await store.load(created.id, last=1)).items] == [{}]
        assert await _take(store.iter_history(created.id, page_size=4)) == loaded.history

    # --- keyed items -----------------------------------------------------------------------------

    async def test_keyed_items_are_read_by_key(self, store: AsyncStore) -> None:
        self._needs(store, "items_by_key")
        created = await store.create(Session(history=_items(2)))
        event = {"type": "function_call", "call_id": "c9", "name": "f", "arguments": "{}"}
        version = await store.commit(
            created.id,
            1,
            append=[KeyedItem("evt-1", event), {"role": "user"}, KeyedItem("a b/ü", {"x": 1})],
        )
        found = await store.items_by_key(created.id, ["evt-1", "missing", "a b/ü"])
        assert sorted(found) == ["a b/ü", "evt-1"]
        assert found["evt-1"] == StoredItem(
            seq=3, timestamp=found["evt-1"].timestamp, key="evt-1", item=event
        )
        assert found["a b/ü"].seq == 5
        assert await store.items_by_key(created.id, []) == {}
        loaded = await store.load(created.id)
        assert [entry.key for entry in loaded.items] == [None, None, "evt-1", None, "a b/ü"]
        assert "key" not in loaded.history[2]  # the merged view never gets the key
        # a key is unique within its session: a second one is refused, nothing written
        with pytest.raises(DuplicateItemKey) as refused:
            await store.commit(created.id, version, append=[_items(1)[0], KeyedItem("evt-1", {})])
        assert (refused.value.session_id, refused.value.key) == (created.id, "evt-1")
        with pytest.raises(DuplicateItemKey):
            await store.commit(created.id, version, append=[KeyedItem("n", {}), KeyedItem("n", {})])
        assert await store.load(created.id) == loaded
        # but another session may use it
        other = await store.create(Session())
        await store.commit(other.id, 1, append=[KeyedItem("evt-1", {"other": True})])
        assert (await store.items_by_key(other.id, ["evt-1"]))["evt-1"].item == {"other": True}
        assert (await store.items_by_key(created.id, ["evt-1"]))["evt-1"].item == event

    async def test_keyed_reads_check_their_arguments(self, store: AsyncStore) -> None:
        self._needs(store, "items_by_key")
        created = await store.create(Session())
        with pytest.raises(SessionNotFound):
            await store.items_by_key("missing", ["k"])
        for bad in (
            "k",
            None,
            5,
            [5],
            [""],
            ["a\x00"],
            ["k" * 257],
            [f"k{i}" for i in range(1001)],
        ):
            with pytest.raises(InvalidRequest):
                await store.items_by_key(created.id, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidSessionId):
            await store.items_by_key("../x", ["k"])

    async def test_replace_history_keys_replace_the_old_ones(self, store: AsyncStore) -> None:
        self._needs(store, "items_by_key")
        created = await store.create(Session())
        await store.commit(created.id, 1, append=[KeyedItem("a", {"n": 1}), KeyedItem("b", {})])
        await store.replace_history(created.id, 2, [KeyedItem("a", {"n": 2})])
        found = await store.items_by_key(created.id, ["a", "b"])
        assert list(found) == ["a"]
        assert (found["a"].seq, found["a"].item) == (3, {"n": 2})

    # --- the tail --------------------------------------------------------------------------------

    async def test_replace_tail_truncates_and_replaces(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail")
        created = await store.create(Session(history=_items(5)))
        before = await store.load(created.id)
        version = await store.replace_tail(created.id, 1, 3, [{"type": "compaction", "n": 1}])
        assert version == 2
        loaded = await store.load(created.id)
        assert [entry.seq for entry in loaded.items] == [1, 2, 3, 4]
        assert loaded.items[:3] == before.items[:3], "kept items keep their seq and timestamp"
        assert loaded.items[3].item == {"type": "compaction", "n": 1}
        assert (loaded.last_seq, loaded.history_len, loaded.version) == (4, 4, 2)
        # truncate (pop the newest): no items
        assert await store.replace_tail(created.id, 2, 3) == 3
        assert [i["seq"] for i in (await store.load(created.id)).history] == [1, 2, 3]
        # after the newest: a plain append; after first_seq - 1: everything
        assert await store.replace_tail(created.id, 3, 3, _items(1, "x")) == 4
        assert await store.replace_tail(created.id, 4, 0, _items(2, "y")) == 5
        loaded = await store.load(created.id)
        assert [(i["seq"], i["content"]) for i in loaded.history] == [(1, "y0"), (2, "y1")]
        assert await store.commit(created.id, 5, append=_items(1, "z")) == 6
        assert [i["seq"] for i in (await store.load(created.id)).history] == [1, 2, 3]

    async def test_replace_tail_is_versioned_and_checked(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail", "replace_history:changes")
        created = await store.create(Session(history=_items(4)))
        await store.replace_history(created.id, 1, _items(3, "c"))  # seqs 5..7
        loaded = await store.load(created.id)
        with pytest.raises(ConflictError):
            await store.replace_tail(created.id, 1, 6)
        for outside in (3, 8, 100):
            with pytest.raises(InvalidRequest, match="after"):
                await store.replace_tail(created.id, 2, outside)
        for bad in (-1, "5", None, True, 2**63):
            with pytest.raises(InvalidRequest):
                await store.replace_tail(created.id, 2, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest):
            await store.replace_tail(created.id, 2, 6, changes={"last_seq": 1})
        with pytest.raises(InvalidSessionData):
            await store.replace_tail(created.id, 2, 6, ["not a dict"])  # type: ignore[list-item]
        with pytest.raises(SessionNotFound):
            await store.replace_tail("missing", 1, 0)
        assert await store.load(created.id) == loaded
        assert await store.replace_tail(created.id, 2, 4, changes={"status": "finished"}) == 3
        loaded = await store.load(created.id)
        assert (loaded.status, loaded.history_len, loaded.first_seq) == ("finished", 0, 5)

    async def test_replace_tail_frees_and_checks_keys(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail", "items_by_key")
        created = await store.create(Session())
        await store.commit(
            created.id, 1, append=[KeyedItem("a", {}), KeyedItem("b", {}), KeyedItem("c", {})]
        )
        with pytest.raises(DuplicateItemKey):  # "a" is kept, so it is still taken
            await store.replace_tail(created.id, 2, 1, [KeyedItem("a", {"again": 1})])
        version = await store.replace_tail(created.id, 2, 1, [KeyedItem("c", {"new": 1})])
        found = await store.items_by_key(created.id, ["a", "b", "c"])
        assert sorted(found) == ["a", "c"]
        assert (found["c"].seq, found["c"].item) == (2, {"new": 1})
        await store.commit(created.id, version, append=[KeyedItem("b", {"back": 1})])
        assert (await store.items_by_key(created.id, ["b"]))["b"].seq == 3

    async def test_replace_tail_respects_leases(self, store: AsyncStore) -> None:
        self._needs(store, "replace_tail")
        created = await store.create(Session(history=_items(3)))
        lease = await store.claim(created.id, "runner", 60)
        with pytest.raises(AlreadyClaimed):
            await store.replace_tail(created.id, 1, 1)
        assert await store.replace_tail(created.id, 1, 1, lease=lease) == 2
        await store.release(lease)
        with pytest.raises(LeaseLost):
            await store.replace_tail(created.id, 2, 1, lease=lease)
        assert (await store.load(created.id)).history_len == 1

    # --- blind append ----------------------------------------------------------------------------

    async def test_blind_append_needs_no_version(self, store: AsyncStore) -> None:
        self._needs(store, "append", "items_by_key")
        created = await store.create(Session(history=_items(2)))
        assert await store.append(created.id, [{"type": "message", "n": 1}]) == 2
        assert await store.append(created.id, [KeyedItem("k", {"n": 2}), {"n": 3}]) == 3
        loaded = await store.load(created.id)
        assert [entry.item for entry in loaded.items[2:]] == [
            {"type": "message", "n": 1},
            {"n": 2},
            {"n": 3},
        ]
        assert [i["seq"] for i in loaded.history] == [1, 2, 3, 4, 5]
        with pytest.raises(DuplicateItemKey):
            await store.append(created.id, [KeyedItem("k", {})])
        with pytest.raises(SessionNotFound):
            await store.append("missing", [{}])
        with pytest.raises(InvalidSessionData):
            await store.append(created.id, {"n": 1})  # type: ignore[dict-item]
        with pytest.raises(InvalidRequest):
            await store.append(created.id, [{}], lease="token")  # type: ignore[arg-type]
        assert await store.load(created.id) == loaded

    async def test_blind_append_respects_leases(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "runner", 60)
        with pytest.raises(AlreadyClaimed):
            await store.append(created.id, [{"n": 1}])
        assert await store.append(created.id, [{"n": 1}], lease=lease) == 2
        await store.release(lease)
        with pytest.raises(LeaseLost):
            await store.append(created.id, [{"n": 2}], lease=lease)
        assert await store.append(created.id, [{"n": 3}]) == 3
        assert [e.item for e in (await store.load(created.id)).items] == [{"n": 1}, {"n": 3}]

    async def test_parallel_blind_appends_lose_nothing(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        tasks, count = 4, 10

        async def worker(w: int) -> list[int]:
            return [await store.append(created.id, [{"w": w, "i": i}]) for i in range(count)]

        versions = await gather_tasks([lambda w=w: worker(w) for w in range(tasks)])  # type: ignore[misc]
        everything = sorted(v for vs in versions for v in vs)
        assert everything == list(range(2, tasks * count + 2)), "each append got its own version"
        loaded = await store.load(created.id)
        assert [i["seq"] for i in loaded.history] == list(range(1, tasks * count + 1))
        for w in range(tasks):
            assert [e.item["i"] for e in loaded.items if e.item["w"] == w] == list(range(count))

    # --- listing -------------------------------------------------------------------------------

    async def test_list_returns_headers_newest_first(self, store: AsyncStore) -> None:
        ids = [(await store.create(Session(history=_items(2)))).id for _ in range(4)]
        await store.commit(ids[1], 1)  # now the most recently updated
        page = await store.list()
        assert [h.id for h in page.sessions] == [ids[1], ids[3], ids[2], ids[0]]
        assert all(type(h) is SessionHeader for h in page.sessions)
        assert page.next_cursor is None
        assert page.sessions[0].version == 2
        assert page.sessions[0].history_len == 2

    async def test_list_filters(self, store: AsyncStore) -> None:
        a = await store.create(Session(owner="ada", agent="support", metadata={"tier": "gold"}))
        b = await store.create(Session(owner="ada", agent="sales", metadata={"tier": 1}))
        c = await store.create(Session(owner="bob", agent="support", metadata={"tier": True}))
        await store.commit(c.id, 1, changes={"status": "finished"})

        async def ids(**filters: Any) -> set[str]:
            return {h.id for h in (await store.list(**filters)).sessions}

        assert await ids(owner="ada") == {a.id, b.id}
        assert await ids(agent="support") == {a.id, c.id}
        assert await ids(owner="ada", agent="support") == {a.id}
        assert await ids(status="finished") == {c.id}
        assert await ids(status=SessionStatus.NEW) == {a.id, b.id}
        assert await ids(status=["new", "finished"]) == {a.id, b.id, c.id}
        assert await ids(metadata={"tier": "gold"}) == {a.id}
        # JSON equality: 1, true and "1" are different values
        assert await ids(metadata={"tier": 1}) == {b.id}
        assert await ids(metadata={"tier": True}) == {c.id}
        assert await ids(metadata={"tier": "1"}) == set()
        assert await ids(metadata={"missing": None}) == set()
        assert await ids(owner="nobody") == set()
        b_updated = (await store.load(b.id)).updated_at
        assert b_updated is not None
        assert await ids(updated_after=b_updated) == {c.id}
        assert await ids(updated_before=b_updated) == {a.id}
        for bad in ({"status": "asleep"}, {"limit": 0}, {"limit": 10**6}, {"cursor": "junk"}):
            with pytest.raises(InvalidRequest):
                await store.list(**bad)

    async def test_list_metadata_filter_follows_commits(self, store: AsyncStore) -> None:
        created = await store.create(Session(metadata={"tag": "old"}))
        await store.commit(created.id, 1, changes={"metadata": {"tag": "new", "n": {"x": 1}}})
        assert (await store.list(metadata={"tag": "old"})).sessions == []
        assert [h.id for h in (await store.list(metadata={"n": {"x": 1}})).sessions] == [created.id]

    async def test_list_pages_have_no_gaps_or_duplicates_under_writes(
        self, store: AsyncStore
    ) -> None:
        original = [(await store.create(Session(owner="pager"))).id for _ in range(23)]
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list(owner="pager", limit=5, cursor=cursor)
            seen.extend(h.id for h in page.sessions)
            # other writers keep creating sessions while we page
            await store.create(Session(owner="pager"))
            await store.create(Session(owner="someone-else"))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)), "a session was listed twice"
        assert set(original) <= set(seen), "a session was skipped"
        assert seen[: len(original)] == list(reversed(original))

    async def test_iter_sessions_pages_through_everything(self, store: AsyncStore) -> None:
        ids = {(await store.create(Session(agent="it"))).id for _ in range(7)}
        got = [h.id async for h in store.iter_sessions(agent="it", limit=2)]
        assert set(got) == ids
        assert len(got) == 7

    # --- bad input -----------------------------------------------------------------------------

    async def test_invalid_ids_raise_before_writing(self, store: AsyncStore) -> None:
        bad_ids = ["", "../x", "a/b", "x\x00y", ".hidden", "a" * 129, "sp ace", "ünï", "a\\b"]
        for bad in bad_ids:
            with pytest.raises(InvalidSessionId):
                Session(id=bad)
            # model_construct skips the model's checks (an assignment is validated): the store
            # must check again
            sneaky = Session.model_construct(id=bad)
            with pytest.raises(InvalidSessionId):
                await store.create(sneaky)
            calls: list[Callable[[], Any]] = [
                lambda bad=bad: store.load(bad),  # type: ignore[misc]
                lambda bad=bad: store.commit(bad, 1),  # type: ignore[misc]
                lambda bad=bad: store.replace_history(bad, 1, []),  # type: ignore[misc]
                lambda bad=bad: store.delete(bad),  # type: ignore[misc]
                lambda bad=bad: store.exists(bad),  # type: ignore[misc]
            ]
            for call in calls:
                with pytest.raises(InvalidSessionId):
                    await call()
        assert (await store.list()).sessions == []
        assert Session(id="a" * 128).id == "a" * 128

    async def test_non_json_values_raise_before_writing(self, store: AsyncStore) -> None:
        bad_values: list[Any] = [
            datetime.now(timezone.utc),
            {1, 2},
            float("nan"),
            float("inf"),
            {1: "int key"},
            object(),
            Decimal("1.5"),
            b"bytes",
            2**70,
        ]
        for value in bad_values:
            for field in ("metadata", "state", "options"):
                with pytest.raises(InvalidSessionData):
                    await store.create(Session(id="bad", **{field: {"k": value}}))
            with pytest.raises(InvalidSessionData):
                await store.create(Session(id="bad", history=[{"role": "user", "content": value}]))
        assert not await store.exists("bad")
        created = await store.create(Session(id="good"))
        for value in bad_values:
            with pytest.raises(InvalidSessionData):
                await store.commit("good", 1, append=[{"role": "user", "content": value}])
            with pytest.raises(InvalidSessionData):
                await store.commit("good", 1, changes={"state": {"k": [value]}})
        with pytest.raises(InvalidSessionData):
            await store.commit("good", 1, append=["not a dict"])  # type: ignore[list-item]
        assert await store.load("good") == created

    # --- delete, exists, expiry ----------------------------------------------------------------

    async def test_delete(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(3)))
        with pytest.raises(ConflictError):
            await store.delete(created.id, expected_version=7)
        assert await store.exists(created.id)
        assert await store.delete(created.id, expected_version=1) is True
        assert not await store.exists(created.id)
        with pytest.raises(SessionNotFound):
            await store.load(created.id)
        assert await store.delete(created.id) is False
        with pytest.raises(SessionNotFound):
            await store.delete(created.id, expected_version=1)
        recreated = await store.create(Session(id=created.id))
        assert recreated.version == 1
        assert (await store.load(created.id)).history == []

    async def test_delete_respects_a_live_lease(self, store: AsyncStore, clock: FakeClock) -> None:
        created = await store.create(Session(history=_items(2)))
        lease = await store.claim(created.id, "worker-1", 30)
        with pytest.raises(AlreadyClaimed) as info:
            await store.delete(created.id)
        assert info.value.holder == "worker-1"
        with pytest.raises(AlreadyClaimed):
            await store.delete(created.id, expected_version=1)
        assert (await store.load(created.id)).history_len == 2
        # with the lease: deleted, and only while it is the current, live one
        other = await store.create(Session())
        with pytest.raises(LeaseLost):
            await store.delete(other.id, lease=lease)
        assert await store.exists(other.id)
        assert await store.delete(created.id, lease=lease) is True
        assert not await store.exists(created.id)
        # a lease that lapsed deletes nothing; a lapsed lease no longer blocks a plain delete
        late = await store.claim(other.id, "worker-2", 10)
        clock.advance(11)
        with pytest.raises(LeaseLost):
            await store.delete(other.id, lease=late)
        assert await store.exists(other.id)
        assert await store.delete(other.id) is True
        for bad in ({"force": "yes"}, {"force": 1}, {"lease": "token"}):
            with pytest.raises(InvalidRequest):
                await store.delete("no-such-session", **bad)

    async def test_forced_delete_overrides_a_live_lease(self, store: AsyncStore) -> None:
        created = await store.create(Session(history=_items(2)))
        lease = await store.claim(created.id, "stuck-runner", 300)
        with pytest.raises(ConflictError):
            await store.delete(created.id, expected_version=7, force=True)
        assert await store.delete(created.id, force=True) is True
        assert not await store.exists(created.id)
        with pytest.raises(LeaseLost):
            await store.renew(lease, 30)
        assert await store.delete(created.id, force=True) is False

    async def test_expired_session_behaves_as_missing(self, store: AsyncStore) -> None:
        gone = await store.create(Session(id="gone", owner="ttl", expires_at=_past()))
        kept = await store.create(Session(id="kept", owner="ttl", expires_at=_future()))
        assert not await store.exists(gone.id)
        with pytest.raises(SessionNotFound):
            await store.load(gone.id)
        with pytest.raises(SessionNotFound):
            await store.commit(gone.id, 1)
        assert [h.id for h in (await store.list(owner="ttl")).sessions] == [kept.id]
        # expiring by commit works the same way
        await store.commit(kept.id, 1, changes={"expires_at": _past()})
        assert not await store.exists(kept.id)
        # an expired session's id is free again, with nothing of the old one left
        again = await store.create(Session(id="gone", history=_items(1)))
        assert again.version == 1
        assert len((await store.load("gone")).history) == 1

    # --- schema versions -----------------------------------------------------------------------

    async def test_newer_schema_version_is_refused_and_left_untouched(
        self, store: AsyncStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(schema, "current", schema.current + 1)
        future = await store.create(Session(id="from-the-future", state={"k": 1}))
        monkeypatch.setattr(schema, "current", schema.current - 1)
        with pytest.raises(UnsupportedSchemaVersion) as info:
            await store.load(future.id)
        assert info.value.found == schema.current + 1
        writes: list[Callable[[], Any]] = [
            lambda: store.commit(future.id, 1, append=_items(1), changes={"state": {}}),
            lambda: store.replace_history(future.id, 1, []),
            lambda: store.delete(future.id),
            lambda: store.create(Session(id=future.id)),
        ]
        for write in writes:
            with pytest.raises(UnsupportedSchemaVersion):
                await write()
        monkeypatch.setattr(schema, "current", schema.current + 1)
        assert await store.load(future.id) == future

    async def test_an_expired_newer_schema_session_is_never_deleted_or_overwritten(
        self, store: AsyncStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Expired, it behaves as missing; but only a tether that knows its schema may delete
        # it, so no call of this one (purge, list, writes, creates over it) removes it.
        monkeypatch.setattr(schema, "current", schema.current + 1)
        future = await store.create(
            Session(
                id="future-expiring",
                owner="future",
                expires_at=clock() + timedelta(seconds=60),
                history=_items(2),
            )
        )
        monkeypatch.setattr(schema, "current", schema.current - 1)
        clock.advance(61)
        purge = store.purge_expired if isinstance(store, AsyncPurges) else None
        if purge is not None:
            await purge()
        assert (await store.list(owner="future")).sessions == []
        assert (await store.list()).sessions == []
        for _ in range(3):  # a store may tidy up expired sessions while it creates others
            await store.create(Session(owner="other"))
        either = (SessionNotFound, UnsupportedSchemaVersion)
        calls: list[tuple[Callable[[], Any], Any]] = [
            (lambda: store.load(future.id), either),
            (lambda: store.commit(future.id, 1, append=_items(1)), either),
            (lambda: store.replace_history(future.id, 1, []), either),
            (lambda: store.claim(future.id, "worker-1", 10), either),
            (lambda: store.delete(future.id), UnsupportedSchemaVersion),
            (lambda: store.delete(future.id, force=True), UnsupportedSchemaVersion),
            (lambda: store.create(Session(id=future.id)), UnsupportedSchemaVersion),
        ]
        restore = store.restore if isinstance(store, AsyncRestores) else None
        if restore is not None:
            mine = await store.create(Session(id="mine"))
            stand_in = mine.model_copy(update={"id": future.id})
            calls.append((lambda: restore(stand_in, replace=True), UnsupportedSchemaVersion))
        for call, error in calls:
            with pytest.raises(error):
                await call()
        if purge is not None:
            await purge()
        clock.advance(-61)
        monkeypatch.setattr(schema, "current", schema.current + 1)
        assert await store.load(future.id) == future

    async def test_older_schema_version_is_migrated_and_written_back(
        self, store: AsyncStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        old = await store.create(Session(id="old", metadata={"v": 1}, history=_items(2)))
        assert old.schema_version == schema.current
        new_version = schema.current + 1

        def header_step(doc: dict[str, Any]) -> dict[str, Any]:
            doc["metadata"] = {**doc["metadata"], "migrated": True}
            return doc

        def item_step(row: dict[str, Any]) -> dict[str, Any]:
            # from schema 3 an item migration gets the stored row: the item is row["item"]
            return {**row, "item": {**row["item"], "migrated": True}}

        monkeypatch.setattr(schema, "current", new_version)
        monkeypatch.setitem(schema.header_migrations, new_version - 1, header_step)
        monkeypatch.setitem(schema.item_migrations, new_version - 1, item_step)
        loaded = await store.load("old")
        assert loaded.schema_version == new_version
        assert loaded.metadata == {"v": 1, "migrated": True}
        assert all(item["migrated"] for item in loaded.history)
        await store.commit("old", loaded.version, append=_items(1, "new"))
        # with the migrations gone, the upgraded form must be what is stored
        monkeypatch.delitem(schema.header_migrations, new_version - 1)
        monkeypatch.delitem(schema.item_migrations, new_version - 1)
        stored = await store.load("old")
        assert stored.schema_version == new_version
        assert stored.metadata == {"v": 1, "migrated": True}
        assert [item.get("migrated") for item in stored.history] == [True, True, None]
        assert [item["seq"] for item in stored.history] == [1, 2, 3]

    # --- concurrency ---------------------------------------------------------------------------

    async def test_racing_writers_from_one_version_exactly_one_wins(
        self, store: AsyncStore, store_opener: Callable[[], Any] | None
    ) -> None:
        created = await store.create(Session())
        rounds = self.race_rounds
        if store_opener is None:
            wins = await race_tasks(store, created.id, rounds, racers=2)
        else:
            ctx = multiprocessing.get_context("spawn")
            barrier = ctx.Barrier(2)
            counter = ctx.Value("i", 0)
            run_processes(
                race_process,
                [(store_opener, self.is_async, created.id, rounds, barrier, counter)] * 2,
            )
            wins = counter.value
        assert wins == rounds, f"{wins} commits won in {rounds} rounds of two racing writers"
        loaded = await store.load(created.id)
        assert loaded.version == rounds + 1
        assert [i["seq"] for i in loaded.history] == list(range(1, rounds + 1))

    async def test_concurrent_appends_with_retry_lose_nothing(
        self, store: AsyncStore, store_opener: Callable[[], Any] | None
    ) -> None:
        created = await store.create(Session())
        writers, count = self.writers, self.appends_per_writer
        if store_opener is None:
            await gather_tasks(
                [
                    lambda w=w: append_with_retry_async(store, created.id, w, count)  # type: ignore[misc]
                    for w in range(writers)
                ]
            )
        else:
            ctx = multiprocessing.get_context("spawn")
            start = ctx.Event()
            args = [
                (store_opener, self.is_async, created.id, w, count, start) for w in range(writers)
            ]
            procs = [ctx.Process(target=append_process, args=a) for a in args]
            for proc in procs:
                proc.start()
            start.set()  # all at once, after every process has started
            for proc in procs:
                proc.join(timeout=300)
            assert [p.exitcode for p in procs] == [0] * writers
        loaded = await store.load(created.id)
        total = writers * count
        assert loaded.history_len == total
        assert loaded.version == total + 1
        assert [i["seq"] for i in loaded.history] == list(range(1, total + 1))
        contents = [i["content"] for i in loaded.history]
        assert len(set(contents)) == total, "an item was stored twice"
        for worker in range(writers):
            mine = [i["index"] for i in loaded.history if i["worker"] == worker]
            assert mine == list(range(count)), f"writer {worker}'s items lost or reordered"

    # --- expiry by the clock -------------------------------------------------------------------

    async def test_session_disappears_when_its_time_comes(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(
            Session(owner="ttl", expires_at=clock() + timedelta(seconds=60))
        )
        assert await store.exists(created.id)
        assert [h.id for h in (await store.list(owner="ttl")).sessions] == [created.id]
        clock.advance(61)
        assert not await store.exists(created.id)
        with pytest.raises(SessionNotFound):
            await store.load(created.id)
        assert (await store.list(owner="ttl")).sessions == []
        with pytest.raises(SessionNotFound):
            await store.claim(created.id, "late", 10)

    # --- claims (leases with fencing) ----------------------------------------------------------

    async def test_claim_gives_a_lease_and_changes_no_data(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session(history=_items(1)))
        before = clock()
        lease = await store.claim(created.id, "worker-1", 30)
        assert isinstance(lease, Lease)
        assert (lease.session_id, lease.owner, lease.fence) == (created.id, "worker-1", 1)
        assert before + timedelta(seconds=29) < lease.expires_at <= clock() + timedelta(seconds=30)
        header = await store.load(created.id, last=0)
        assert header.version == 1, "a claim is not a data write"
        assert header.updated_at == created.updated_at
        assert (header.lease_owner, header.lease_fence) == ("worker-1", 1)
        assert header.lease_expires_at == lease.expires_at
        listed = (await store.list()).sessions[0]
        assert lease.token not in listed.model_dump_json(), "a listing must not reveal the token"
        assert lease.token not in header.model_dump_json()

    async def test_another_owner_is_refused_while_the_lease_lives(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "worker-1", 30)
        clock.advance(29)
        with pytest.raises(AlreadyClaimed) as info:
            await store.claim(created.id, "worker-2", 30)
        assert info.value.holder == "worker-1"
        assert info.value.expires_at == lease.expires_at
        assert info.value.session_id == created.id

    async def test_the_holders_name_does_not_take_a_live_lease_over(
        self, store: AsyncStore
    ) -> None:
        # A holder's name is public (AlreadyClaimed.holder, listings): claiming under it must
        # not take the lease. Only the lease itself (its token) renews or releases it.
        created = await store.create(Session())
        first = await store.claim(created.id, "worker-1", 30)
        with pytest.raises(AlreadyClaimed) as info:
            await store.claim(created.id, "worker-1", 30)
        assert info.value.holder == "worker-1"
        header = await store.load(created.id, last=0)
        assert (header.lease_owner, header.lease_fence) == ("worker-1", first.fence)
        renewed = await store.renew(first, 30)
        assert (renewed.token, renewed.fence) == (first.token, first.fence)
        assert await store.commit(created.id, 1, append=_items(1), lease=first) == 2
        await store.release(first)
        second = await store.claim(created.id, "worker-1", 30)  # free again: a new lease
        assert second.fence == first.fence + 1
        assert second.token != first.token

    async def test_renew_keeps_ownership(self, store: AsyncStore, clock: FakeClock) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "worker-1", 30)
        clock.advance(20)
        renewed = await store.renew(lease, 30)
        assert (renewed.token, renewed.fence, renewed.owner) == (lease.token, 1, "worker-1")
        assert renewed.expires_at > lease.expires_at
        clock.advance(20)  # past the first expiry, within the renewed one
        with pytest.raises(AlreadyClaimed):
            await store.claim(created.id, "worker-2", 30)
        assert await store.commit(created.id, 1, append=_items(1), lease=renewed) == 2
        await store.renew(renewed, timedelta(minutes=5))

    async def test_release_lets_the_next_owner_claim_at_once(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        first = await store.claim(created.id, "worker-1", 300)
        await store.release(first)
        header = await store.load(created.id, last=0)
        assert header.lease_expires_at is None
        second = await store.claim(created.id, "worker-2", 300)
        assert second.fence == 2
        with pytest.raises(LeaseLost):
            await store.release(first)
        with pytest.raises(LeaseLost):
            await store.renew(first, 30)

    async def test_fence_grows_with_every_new_claim(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        fences = []
        for round_ in range(4):
            lease = await store.claim(created.id, f"worker-{round_}", 10)
            fences.append(lease.fence)
            if round_ % 2:
                await store.release(lease)
            else:
                clock.advance(11)  # let it expire instead
        assert fences == [1, 2, 3, 4]

    async def test_expired_holder_cannot_write_and_new_holder_survives(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        old = await store.claim(created.id, "slow-runner", 10)
        assert await store.commit(created.id, 1, append=_items(1, "old"), lease=old) == 2
        clock.advance(11)
        new = await store.claim(created.id, "new-runner", 10)
        assert new.fence == old.fence + 1
        before = await store.load(created.id)
        late_writes: list[Callable[[], Any]] = [
            lambda: store.commit(created.id, 2, append=_items(1, "late"), lease=old),
            lambda: store.replace_history(created.id, 2, [], lease=old),
            lambda: store.renew(old, 10),
            lambda: store.release(old),
        ]
        for write in late_writes:
            with pytest.raises(LeaseLost):
                await write()
        assert await store.load(created.id) == before
        assert await store.commit(created.id, 2, append=_items(1, "new"), lease=new) == 3
        contents = [i["content"] for i in (await store.load(created.id)).history]
        assert contents == ["old0", "new0"]

    async def test_lapsed_lease_is_lost_even_if_nobody_claimed(
        self, store: AsyncStore, clock: FakeClock
    ) -> None:
        created = await store.create(Session())
        lease = await store.claim(created.id, "worker-1", 10)
        clock.advance(11)
        with pytest.raises(LeaseLost):
            await store.commit(created.id, 1, append=_items(1), lease=lease)
        with pytest.raises(LeaseLost):
            await store.renew(lease, 10)
        assert await store.commit(created.id, 1, append=_items(1)) == 2  # unclaimed again

    async def test_writes_without_the_lease_are_refused_while_claimed(
        self, store: AsyncStore
    ) -> None:
        created = await store.create(Session(history=_items(2)))
        lease = await store.claim(created.id, "worker-1", 300)
        with pytest.raises(AlreadyClaimed):
            await store.commit(created.id, 1, append=_items(1, "intruder"))
        with pytest.raises(AlreadyClaimed):
            await store.replace_history(created.id, 1, [])
        assert (await store.load(created.id)) == await store.load(created.id)
        assert (await store.load(created.id)).history_len == 2
        # the lease is checked before the version: a lost runner learns it is lost
        other = await store.create(Session())
        with pytest.raises(LeaseLost):
            await store.commit(other.id, 99, lease=lease)
        await store.release(lease)
        assert await store.commit(created.id, 1, append=_items(1)) == 2

    async def test_claim_bad_input(self, store: AsyncStore) -> None:
        created = await store.create(Session())
        with pytest.raises(SessionNotFound):
            await store.claim("missing", "worker-1", 10)
        with pytest.raises(InvalidSessionId):
            await store.claim("../x", "worker-1", 10)
        for ttl in (0, -1, float("nan"), "10", None):
            with pytest.raises(InvalidRequest):
                await store.claim(created.id, "worker-1", ttl)  # type: ignore[arg-type]
        for owner in ("", None, 5):
            with pytest.raises(InvalidRequest):
                await store.claim(created.id, owner, 10)  # type: ignore[arg-type]
        lease = await store.claim(created.id, "worker-1", 10)
        with pytest.raises(InvalidRequest):
            await store.renew(lease, 0)
        await store.delete(created.id, lease=lease)
        with pytest.raises(LeaseLost):
            await store.renew(lease, 10)

    async def test_racing_claims_have_exactly_one_winner_per_round(
        self, store: AsyncStore, store_opener: Callable[[], Any] | None
    ) -> None:
        created = await store.create(Session())
        racers, rounds = self.claim_racers, self.claim_rounds
        if store_opener is None:
            wins = await claim_race_tasks(store, created.id, rounds, racers)
        else:
            ctx = multiprocessing.get_context("spawn")
            barrier = ctx.Barrier(racers)
            counts = ctx.Array("i", rounds)
            run_processes(
                claim_race_process,
                [
                    (store_opener, self.is_async, created.id, w, rounds, barrier, counts)
                    for w in range(racers)
                ],
            )
            wins = [counts[index] for index in range(rounds)]
        assert wins == [1] * rounds, f"rounds without exactly one winner: {wins}"
        header = await store.load(created.id, last=0)
        assert header.lease_fence == rounds


class AsyncStoreConformance(
    AsyncCoreConformance, AsyncForkConformance, AsyncRestoreConformance, AsyncPurgeConformance
):
    """The core contract and every optional ability's clauses; those of an ability the store
    lacks skip, each with the reason. Subclass it as :class:`AsyncCoreConformance`."""
