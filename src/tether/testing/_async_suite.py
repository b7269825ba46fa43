"""Store conformance suite, async side; tools/unasync.py writes the sync side from it.

:class:`AsyncCoreConformance` is the contract every store keeps; the optional abilities have a
class each (``_async_abilities.py``); :class:`AsyncStoreConformance` is all of them at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from .. import (
    AsyncStore,
    ConflictError,
    InvalidRequest,
    Session,
    SessionExists,
    SessionNotFound,
    SessionStatus,
    _core,
)
from ._async_abilities import (
    AsyncForkConformance,
    AsyncPurgeConformance,
    AsyncRestoreConformance,
)
from ._async_clauses_history import AsyncHistoryClauses
from ._async_clauses_history import take as _take
from ._async_clauses_lifecycle import AsyncLifecycleClauses
from ._clock import FakeClock
from ._suite_data import NESTED, UNICODE
from ._suite_data import future as _future
from ._suite_data import items as _items

__all__ = ["AsyncCoreConformance", "AsyncStoreConformance"]


class AsyncCoreConformance(AsyncHistoryClauses, AsyncLifecycleClauses):
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


class AsyncStoreConformance(
    AsyncCoreConformance, AsyncForkConformance, AsyncRestoreConformance, AsyncPurgeConformance
):
    """The core contract and every optional ability's clauses; those of an ability the store
    lacks skip, each with the reason. Subclass it as :class:`AsyncCoreConformance`."""
